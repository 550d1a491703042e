package strom.bench.kstreams;

import java.util.HashMap;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;

import org.apache.kafka.streams.StreamsConfig;

/** The command line of {@link Run}. */
record Options(
        String bootstrap,
        String input,
        String output,
        Jobs.Job job,
        String guarantee,
        int threads,
        OptionalLong events,
        String stateDir,
        String applicationId,
        int timeoutSeconds,
        boolean verify) {

    static final String USAGE = """
            usage: java -cp target/classes:$(cat target/classpath.txt) strom.bench.kstreams.Run \\
                     --bootstrap HOST:PORT --input TOPIC --output TOPIC \\
                     --job passthrough|count --guarantee exactly_once_v2|at_least_once \\
                     [--threads N] [--events N] [--state-dir DIR] [--application-id ID] \\
                     [--timeout-seconds S] [--verify]

            Runs one Kafka Streams application over all records the input topic holds at start
            and prints one line on stdout:
              {"events": N, "seconds": S, "running_seconds": R, "peak_rss_bytes": B}
            (plus "output_records": M with --verify).

              --bootstrap        the cluster's bootstrap servers
              --input            the input topic (must exist; read from its beginning)
              --output           the output topic (must exist)
              --job              passthrough: copy key and value; count: running count per key
              --guarantee        processing.guarantee: exactly_once_v2 or at_least_once
              --threads          num.stream.threads (default 1)
              --events           the records the input must hold (default: what it holds)
              --state-dir        state.dir (default: a fresh temporary directory)
              --application-id   application.id = consumer group (default: a fresh one)
              --timeout-seconds  deadline of the whole run (default 600)
              --verify           after close, count the output's committed records
              --help             this text
            """;

    private static final Set<String> VALUED = Set.of(
            "--bootstrap", "--input", "--output", "--job", "--guarantee", "--threads", "--events",
            "--state-dir", "--application-id", "--timeout-seconds");

    /** A command line that cannot run; the message says why. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    /** Parses {@code args}; null for --help. */
    static Options parse(String[] args) throws UsageException {
        Map<String, String> values = new HashMap<>();
        boolean verify = false;
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("--help") || arg.equals("-h")) {
                return null;
            } else if (arg.equals("--verify")) {
                verify = true;
            } else if (VALUED.contains(arg)) {
                if (i + 1 >= args.length) {
                    throw new UsageException(arg + " needs a value");
                }
                values.put(arg, args[++i]);
            } else {
                throw new UsageException("unknown argument '" + arg + "'");
            }
        }
        String guarantee = required(values, "--guarantee");
        if (!guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2) && !guarantee.equals(StreamsConfig.AT_LEAST_ONCE)) {
            throw new UsageException("--guarantee must be exactly_once_v2 or at_least_once, not '" + guarantee + "'");
        }
        Jobs.Job job;
        try {
            job = Jobs.Job.parse(required(values, "--job"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--job: " + e.getMessage());
        }
        String events = values.get("--events");
        return new Options(
                required(values, "--bootstrap"),
                required(values, "--input"),
                required(values, "--output"),
                job,
                guarantee,
                (int) number(values, "--threads", "1", 1),
                events == null ? OptionalLong.empty() : OptionalLong.of(number(values, "--events", null, 0)),
                values.get("--state-dir"),
                values.get("--application-id"),
                (int) number(values, "--timeout-seconds", "600", 1),
                verify);
    }

    private static String required(Map<String, String> values, String name) throws UsageException {
        String value = values.get(name);
        if (value == null || value.isEmpty()) {
            throw new UsageException(name + " is required");
        }
        return value;
    }

    private static long number(Map<String, String> values, String name, String fallback, long min)
            throws UsageException {
        String text = values.getOrDefault(name, fallback);
        long value;
        try {
            value = Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw new UsageException(name + " must be a number, not '" + text + "'");
        }
        if (value < min || value > (name.equals("--events") ? Long.MAX_VALUE : Integer.MAX_VALUE)) {
            throw new UsageException(name + " must be at least " + min + ", not " + value);
        }
        return value;
    }
}
