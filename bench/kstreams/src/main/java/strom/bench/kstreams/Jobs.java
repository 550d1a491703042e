package strom.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/** The benchmark's topologies and their configuration, shared by {@link Run} and the tests. */
public final class Jobs {
    /** The RocksDB store of the keyed count. */
    public static final String COUNT_STORE = "counts";
    /** Commits every second, as Strom checkpoints (and commits) every second. */
    public static final int COMMIT_INTERVAL_MS = 1000;
    /** The producer linger of Strom's sinks and the raw loops. */
    public static final int LINGER_MS = 5;

    private Jobs() {}

    /** What the application does with the input. */
    public enum Job {
        /** Copies each record's key and value to the output. */
        PASSTHROUGH,
        /** Counts records per key and writes each running count. */
        COUNT;

        public static Job parse(String name) {
            for (Job job : values()) {
                if (job.name().toLowerCase(Locale.ROOT).equals(name)) {
                    return job;
                }
            }
            throw new IllegalArgumentException("unknown job '" + name + "' (passthrough or count)");
        }
    }

    public static Topology topology(Job job, String input, String output) {
        return switch (job) {
            case PASSTHROUGH -> passthrough(input, output);
            case COUNT -> count(input, output);
        };
    }

    /** Copies every record of {@code input} (key and value as bytes) to {@code output}. */
    public static Topology passthrough(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        return builder.build();
    }

    /**
     * Counts the records of {@code input} per key in a persistent (RocksDB) store and writes
     * every running count to {@code output}: the key as is, the count as its decimal string's
     * bytes (what Strom writes, {@code count.to_string()}). The input's keys are its partitioning
     * keys, so {@code groupByKey} adds no repartition topic.
     */
    public static Topology count(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.Bytes(), Serdes.ByteArray()))
                .groupByKey(Grouped.with(Serdes.Bytes(), Serdes.ByteArray()))
                .count(Materialized.<Bytes, Long>as(Stores.persistentTimestampedKeyValueStore(COUNT_STORE))
                        .withKeySerde(Serdes.Bytes())
                        .withValueSerde(Serdes.Long()))
                .toStream()
                .mapValues(count -> count == null ? null : Long.toString(count).getBytes(StandardCharsets.UTF_8))
                .to(output, Produced.with(Serdes.Bytes(), Serdes.ByteArray()));
        return builder.build();
    }

    /**
     * The application's configuration: {@code guarantee} is {@code exactly_once_v2} or
     * {@code at_least_once}; commits every second under both; no record cache, so every update
     * of the count is forwarded (Strom writes every running count); producers idempotent with a
     * 5 ms linger, as Strom's.
     */
    public static Properties config(
            String bootstrap, String applicationId, String guarantee, int threads, String stateDir) {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.toString(COMMIT_INTERVAL_MS));
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.toString(threads));
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        // The classic group protocol, so Run can follow the commits with
        // Admin#listConsumerGroupOffsets whatever a later default is.
        props.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, "classic");
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class.getName());
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class.getName());
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), Integer.toString(LINGER_MS));
        if (!guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2)) {
            // Exactly once makes its producers idempotent itself (and warns about the setting).
            props.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), "true");
        }
        // No global state here; set only to keep the 4.x warning about its default off stderr.
        props.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, "true");
        return props;
    }
}
