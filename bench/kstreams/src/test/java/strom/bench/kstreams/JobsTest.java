package strom.bench.kstreams;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class JobsTest {
    private static final String IN = "bench-in";
    private static final String OUT = "bench-out";

    @TempDir
    Path stateDir;

    /** The configuration the program runs with (the driver reaches no broker). */
    private Properties config(String guarantee) {
        return Jobs.config("localhost:9", "jobs-test", guarantee, 2, stateDir.toString());
    }

    private static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    @ParameterizedTest
    @ValueSource(strings = {StreamsConfig.AT_LEAST_ONCE, StreamsConfig.EXACTLY_ONCE_V2})
    void passthroughCopiesKeyAndValue(String guarantee) {
        try (TopologyTestDriver driver = new TopologyTestDriver(Jobs.passthrough(IN, OUT), config(guarantee))) {
            TestInputTopic<byte[], byte[]> in =
                    driver.createInputTopic(IN, new ByteArraySerializer(), new ByteArraySerializer());
            TestOutputTopic<byte[], byte[]> out =
                    driver.createOutputTopic(OUT, new ByteArrayDeserializer(), new ByteArrayDeserializer());
            byte[] value = new byte[100];
            java.util.Arrays.fill(value, (byte) 'x');
            in.pipeInput(bytes("key-1"), value);
            in.pipeInput(bytes("key-2"), bytes("other"));
            in.pipeInput(null, bytes("no key"));

            List<TestRecord<byte[], byte[]>> records = out.readRecordsToList();
            assertEquals(3, records.size());
            assertArrayEquals(bytes("key-1"), records.get(0).key());
            assertArrayEquals(value, records.get(0).value());
            assertArrayEquals(bytes("key-2"), records.get(1).key());
            assertArrayEquals(bytes("other"), records.get(1).value());
            assertNull(records.get(2).key());
            assertArrayEquals(bytes("no key"), records.get(2).value());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {StreamsConfig.AT_LEAST_ONCE, StreamsConfig.EXACTLY_ONCE_V2})
    void countEmitsEveryRunningCountAsDecimalBytes(String guarantee) {
        try (TopologyTestDriver driver = new TopologyTestDriver(Jobs.count(IN, OUT), config(guarantee))) {
            TestInputTopic<String, byte[]> in =
                    driver.createInputTopic(IN, new StringSerializer(), new ByteArraySerializer());
            TestOutputTopic<String, String> out =
                    driver.createOutputTopic(OUT, new StringDeserializer(), new StringDeserializer());
            byte[] value = new byte[100];
            for (String key : List.of("key-1", "key-2", "key-1", "key-1", "key-2", "key-9999")) {
                in.pipeInput(key, value);
            }
            assertEquals(
                    List.of(
                            KeyValue.pair("key-1", "1"),
                            KeyValue.pair("key-2", "1"),
                            KeyValue.pair("key-1", "2"),
                            KeyValue.pair("key-1", "3"),
                            KeyValue.pair("key-2", "2"),
                            KeyValue.pair("key-9999", "1")),
                    out.readKeyValuesToList());
            // Kept in a persistent (RocksDB) store.
            KeyValueStore<Bytes, ValueAndTimestamp<Long>> store = driver.getTimestampedKeyValueStore(Jobs.COUNT_STORE);
            assertTrue(store.persistent());
            assertEquals(3L, store.get(Bytes.wrap(bytes("key-1"))).value());
        }
    }

    @Test
    void countDoesNotRepartition() {
        Topology topology = Jobs.count(IN, OUT);
        String description = topology.describe().toString();
        assertFalse(description.contains("repartition"), description);
        assertEquals(1, topology.describe().subtopologies().size(), description);
    }

    @Test
    void configMatchesStromRuns() {
        Properties props = config(StreamsConfig.EXACTLY_ONCE_V2);
        assertEquals("exactly_once_v2", props.get(StreamsConfig.PROCESSING_GUARANTEE_CONFIG));
        assertEquals("1000", props.get(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG));
        assertEquals("0", props.get(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG));
        assertEquals("2", props.get(StreamsConfig.NUM_STREAM_THREADS_CONFIG));
        assertEquals("earliest", props.get(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG)));
        assertEquals("5", props.get(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG)));
        // Valid as a whole, and commits every second under exactly once too (its default is 100 ms).
        StreamsConfig parsed = new StreamsConfig(props);
        assertEquals(1000L, parsed.getLong(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG));
        assertEquals(0L, parsed.getLong(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG));
        assertEquals("true", config(StreamsConfig.AT_LEAST_ONCE)
                .get(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG)));
        assertEquals("5", String.valueOf(parsed.getProducerConfigs("client").get(ProducerConfig.LINGER_MS_CONFIG)));
    }

    @Test
    void optionsParse() throws Exception {
        Options options = Options.parse(new String[] {
            "--bootstrap", "localhost:9092", "--input", "in", "--output", "out", "--job", "count",
            "--guarantee", "at_least_once", "--threads", "4", "--events", "1000", "--verify"});
        assertEquals(Jobs.Job.COUNT, options.job());
        assertEquals(4, options.threads());
        assertEquals(1000, options.events().getAsLong());
        assertEquals(600, options.timeoutSeconds());
        assertTrue(options.verify());
        assertNull(Options.parse(new String[] {"--help"}));
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {
            "--bootstrap", "b", "--input", "in", "--output", "out", "--job", "count", "--guarantee", "exactly_once"}));
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {"--bootstrap"}));
    }

    @Test
    void peakRssIsReadOnLinux() {
        long peak = Run.peakRssBytes();
        assertTrue(peak >= 0);
        if (java.nio.file.Files.exists(Path.of("/proc/self/status"))) {
            assertTrue(peak > 1024 * 1024, "VmHWM " + peak);
        }
    }
}
