package strom.bench.kstreams;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeTopicsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;

/**
 * Runs one Kafka Streams application (see {@link Jobs}) over all records its input holds at
 * start, and prints {@code {"events": N, "seconds": S, "running_seconds": R, "peak_rss_bytes": B}}
 * on stdout: S from {@code KafkaStreams#start} until the application's committed offsets on the
 * input reach the input's end offsets (looked at every 100 ms; commits happen every second), R
 * from the same start until the application first became RUNNING.
 */
public final class Run {
    /** Between two looks at the committed offsets (and at the output, when verifying). */
    private static final long POLL_MS = 100;
    /** The longest one admin or consumer call is waited for inside a loop. */
    private static final long CALL_MS = 10_000;
    /** What closing is given at least, even when the run's deadline is nearly spent. */
    private static final long CLOSE_MIN_MS = 10_000;

    private Run() {}

    /** A failed run; the message says why. */
    static final class Failure extends Exception {
        Failure(String message) {
            super(message);
        }

        Failure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The moment by which the whole run must be done. */
    private record Deadline(long atNanos, int seconds) {
        static Deadline in(int seconds) {
            return new Deadline(System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds), seconds);
        }

        long remainingMs() {
            return Math.max(0, TimeUnit.NANOSECONDS.toMillis(atNanos - System.nanoTime()));
        }

        /** What one call may wait: the time left, at most {@code cap}, at least 1 ms. */
        long callMs(long cap) {
            return Math.max(1, Math.min(remainingMs(), cap));
        }

        boolean passed() {
            return System.nanoTime() - atNanos >= 0;
        }
    }

    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.print(Options.USAGE);
            System.exit(2);
        }
        Options options;
        try {
            options = Options.parse(args);
        } catch (Options.UsageException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println();
            System.err.print(Options.USAGE);
            System.exit(2);
            return;
        }
        if (options == null) {
            System.out.print(Options.USAGE);
            System.exit(0);
        }
        int code = 0;
        try {
            String line = run(options);
            System.out.println(line);
            System.out.flush();
        } catch (Failure e) {
            System.err.println("kstreams bench failed: " + e.getMessage());
            code = 1;
        } catch (Exception | Error e) {
            System.err.println("kstreams bench failed: " + e);
            e.printStackTrace();
            code = 1;
        }
        System.exit(code);
    }

    /** Runs the application as {@code options} say; returns the result line. */
    static String run(Options options) throws Failure {
        Deadline deadline = Deadline.in(options.timeoutSeconds());
        String applicationId = options.applicationId() != null
                ? options.applicationId()
                : "strom-kstreams-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
        Path ownStateDir = null;
        String stateDir = options.stateDir();
        if (stateDir == null) {
            try {
                ownStateDir = Files.createTempDirectory("strom-kstreams-");
            } catch (IOException e) {
                throw new Failure("cannot create a state directory: " + e, e);
            }
            stateDir = ownStateDir.toString();
        }
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrap());
        // Admin calls give up with the run (and no earlier); a request, after 30 s at most.
        long timeoutMs = Math.min(Integer.MAX_VALUE, TimeUnit.SECONDS.toMillis(options.timeoutSeconds()));
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Long.toString(timeoutMs));
        adminProps.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Long.toString(Math.min(timeoutMs, 30_000)));
        Admin admin;
        try {
            admin = Admin.create(adminProps);
        } catch (RuntimeException e) {
            throw new Failure("cannot make an admin client for " + options.bootstrap() + ": " + chain(e), e);
        }
        try {
            // The topics, which tells also whether the cluster can be reached at all.
            Set<String> names = new LinkedHashSet<>(List.of(options.input(), options.output()));
            DescribeTopicsResult described = admin.describeTopics(names);
            Map<String, TopicDescription> topics = new HashMap<>();
            for (String name : names) {
                topics.put(name, await(described.topicNameValues().get(name), deadline, Long.MAX_VALUE,
                        "reaching " + options.bootstrap() + " to describe topic '" + name + "'"));
            }
            List<TopicPartition> inputPartitions = partitions(topics.get(options.input()));
            Map<TopicPartition, Long> start = offsets(admin, inputPartitions, OffsetSpec.earliest(), deadline);
            Map<TopicPartition, Long> end = offsets(admin, inputPartitions, OffsetSpec.latest(), deadline);
            long events = 0;
            for (TopicPartition partition : inputPartitions) {
                events += end.get(partition) - start.get(partition);
            }
            if (options.events().isPresent() && options.events().getAsLong() != events) {
                throw new Failure("input topic '" + options.input() + "' holds " + events
                        + " records, not the " + options.events().getAsLong() + " of --events");
            }
            Map<TopicPartition, OffsetAndMetadata> before = await(
                    admin.listConsumerGroupOffsets(applicationId).partitionsToOffsetAndMetadata(),
                    deadline, Long.MAX_VALUE, "listing the offsets of group '" + applicationId + "'");
            if (before.values().stream().anyMatch(o -> o != null)) {
                throw new Failure("application id '" + applicationId
                        + "' already has committed offsets: give a fresh --application-id");
            }

            KafkaStreams streams;
            try {
                streams = new KafkaStreams(
                        Jobs.topology(options.job(), options.input(), options.output()),
                        Jobs.config(options.bootstrap(), applicationId, options.guarantee(), options.threads(), stateDir));
            } catch (RuntimeException e) {
                throw new Failure("cannot make the Kafka Streams application: " + chain(e), e);
            }
            AtomicLong runningAt = new AtomicLong(-1);
            AtomicReference<Throwable> crash = new AtomicReference<>();
            streams.setStateListener((now, was) -> {
                if (now == KafkaStreams.State.RUNNING) {
                    runningAt.compareAndSet(-1, System.nanoTime());
                }
            });
            streams.setUncaughtExceptionHandler(e -> {
                crash.compareAndSet(null, e);
                return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            long started = System.nanoTime();
            long finished;
            try {
                streams.start();
                finished = awaitCommitted(admin, applicationId, start, end, events, streams, crash, deadline);
            } catch (Failure | RuntimeException e) {
                streams.close(Duration.ofMillis(CLOSE_MIN_MS));
                throw e;
            }
            long closeMs = Math.max(deadline.remainingMs(), CLOSE_MIN_MS);
            if (!streams.close(Duration.ofMillis(closeMs))) {
                throw new Failure("the Kafka Streams application processed all records but did not close within "
                        + closeMs + " ms");
            }
            cleanUp(streams, ownStateDir);

            Long outputRecords = null;
            if (options.verify()) {
                outputRecords = countCommitted(options.bootstrap(), partitions(topics.get(options.output())), deadline);
            }
            long running = runningAt.get();
            return String.format(Locale.ROOT, "{\"events\": %d, \"seconds\": %.3f, \"running_seconds\": %s, "
                            + "\"peak_rss_bytes\": %d%s}",
                    events,
                    (finished - started) / 1e9,
                    running < 0 ? "null" : String.format(Locale.ROOT, "%.3f", (running - started) / 1e9),
                    peakRssBytes(),
                    outputRecords == null ? "" : ", \"output_records\": " + outputRecords);
        } finally {
            // Bounded: calls still pending (an unreachable cluster) are given up.
            admin.close(Duration.ofSeconds(5));
        }
    }

    /**
     * Waits until the committed offsets of group {@code applicationId} reach {@code end} on every
     * input partition; returns that moment ({@link System#nanoTime}).
     */
    private static long awaitCommitted(
            Admin admin,
            String applicationId,
            Map<TopicPartition, Long> start,
            Map<TopicPartition, Long> end,
            long events,
            KafkaStreams streams,
            AtomicReference<Throwable> crash,
            Deadline deadline) throws Failure {
        long committed = 0;
        String problem = null;
        while (true) {
            Throwable crashed = crash.get();
            if (crashed != null) {
                throw new Failure("the Kafka Streams application failed: " + chain(crashed), crashed);
            }
            KafkaStreams.State state = streams.state();
            if (state == KafkaStreams.State.ERROR || state == KafkaStreams.State.PENDING_ERROR
                    || state == KafkaStreams.State.NOT_RUNNING || state == KafkaStreams.State.PENDING_SHUTDOWN) {
                throw new Failure("the Kafka Streams application stopped (state " + state + ") after committing "
                        + committed + " of " + events + " records");
            }
            try {
                Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(applicationId)
                        .partitionsToOffsetAndMetadata()
                        .get(deadline.callMs(CALL_MS), TimeUnit.MILLISECONDS);
                boolean done = true;
                committed = 0;
                for (Map.Entry<TopicPartition, Long> partition : end.entrySet()) {
                    long first = start.get(partition.getKey());
                    OffsetAndMetadata offset = offsets.get(partition.getKey());
                    long at = offset == null ? first : Math.max(first, offset.offset());
                    committed += Math.min(at, partition.getValue()) - first;
                    done &= at >= partition.getValue();
                }
                if (done) {
                    return System.nanoTime();
                }
                problem = null;
            } catch (ExecutionException e) {
                problem = chain(e.getCause());
            } catch (TimeoutException e) {
                problem = "no answer to listing the group's offsets";
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new Failure("interrupted while waiting for the commits");
            }
            if (deadline.passed()) {
                throw new Failure("committed only " + committed + " of " + events + " input records within "
                        + deadline.seconds() + " s (--timeout-seconds)"
                        + (problem == null ? "" : "; last error: " + problem));
            }
            sleep(Math.min(POLL_MS, deadline.remainingMs()));
        }
    }

    /** Counts the committed records of {@code partitions} with a read_committed consumer. */
    private static long countCommitted(String bootstrap, List<TopicPartition> partitions, Deadline deadline)
            throws Failure {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        long count = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            // The last stable offsets, under read_committed.
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions, Duration.ofMillis(deadline.callMs(CALL_MS)));
            Set<TopicPartition> open = new HashSet<>(partitions);
            while (true) {
                open.removeIf(p -> consumer.position(p, Duration.ofMillis(deadline.callMs(CALL_MS))) >= end.get(p));
                if (open.isEmpty()) {
                    return count;
                }
                if (deadline.passed()) {
                    throw new Failure("verifying: read only " + count + " committed output records within "
                            + deadline.seconds() + " s (--timeout-seconds)");
                }
                count += consumer.poll(Duration.ofMillis(POLL_MS)).count();
            }
        } catch (org.apache.kafka.common.errors.TimeoutException e) {
            throw new Failure("verifying: " + e.getMessage() + " after " + count + " records", e);
        }
    }

    private static List<TopicPartition> partitions(TopicDescription topic) {
        List<TopicPartition> partitions = new ArrayList<>();
        topic.partitions().forEach(p -> partitions.add(new TopicPartition(topic.name(), p.partition())));
        return partitions;
    }

    private static Map<TopicPartition, Long> offsets(
            Admin admin, List<TopicPartition> partitions, OffsetSpec spec, Deadline deadline) throws Failure {
        Map<TopicPartition, OffsetSpec> request = new HashMap<>();
        partitions.forEach(p -> request.put(p, spec));
        Map<TopicPartition, Long> offsets = new HashMap<>();
        await(admin.listOffsets(request).all(), deadline, Long.MAX_VALUE, "listing the offsets of the input")
                .forEach((p, info) -> offsets.put(p, info.offset()));
        return offsets;
    }

    /** Waits for {@code future} until the deadline, at most {@code capMs}. */
    private static <T> T await(KafkaFuture<T> future, Deadline deadline, long capMs, String what) throws Failure {
        long waitMs = deadline.callMs(capMs);
        try {
            return future.get(waitMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new Failure(what + ": no answer within " + waitMs + " ms (--timeout-seconds)");
        } catch (ExecutionException e) {
            throw new Failure(what + ": " + chain(e.getCause()), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure(what + ": interrupted");
        }
    }

    /** Deletes the application's local state, and the state directory if this run made it. */
    private static void cleanUp(KafkaStreams streams, Path ownStateDir) {
        try {
            streams.cleanUp();
        } catch (RuntimeException e) {
            System.err.println("kstreams bench: could not clean up the local state: " + e.getMessage());
        }
        if (ownStateDir != null) {
            try (Stream<Path> paths = Files.walk(ownStateDir)) {
                for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(path);
                }
            } catch (IOException | RuntimeException e) {
                System.err.println("kstreams bench: could not delete " + ownStateDir + ": " + e);
            }
        }
    }

    /** The process's peak resident set (VmHWM) in bytes; 0 where it cannot be read. */
    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    String[] parts = line.substring("VmHWM:".length()).trim().split("\\s+");
                    long value = Long.parseLong(parts[0]);
                    return parts.length > 1 && parts[1].equalsIgnoreCase("kB") ? value * 1024 : value;
                }
            }
        } catch (IOException | RuntimeException e) {
            // No /proc: not Linux.
        }
        return 0;
    }

    /** An exception and its causes, as one line. */
    private static String chain(Throwable error) {
        StringBuilder out = new StringBuilder();
        Set<Throwable> seen = new HashSet<>();
        for (Throwable at = error; at != null && seen.add(at); at = at.getCause()) {
            if (out.length() > 0) {
                out.append(": caused by ");
            }
            out.append(at);
        }
        return out.toString();
    }

    private static void sleep(long ms) throws Failure {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted");
        }
    }
}
