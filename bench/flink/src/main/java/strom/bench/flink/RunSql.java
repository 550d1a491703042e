package strom.bench.flink;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import strom.bench.flink.nexmark.NexmarkTableSource;

/**
 * Runs a Flink SQL script on a local MiniCluster (in this JVM) and prints one JSON line:
 * {@code {"events": E, "net_runtime_ms": N, "wall_ms": W, "seconds": S, "peak_rss_bytes": R}}: the
 * events the nexmark sources emitted (an accumulator), the job's net runtime, the time from
 * submitting the INSERT to its end, the net runtime in seconds, and the JVM's peak RSS.
 *
 * <pre>
 * RunSql --sql FILE --parallelism P --checkpoint-interval-ms MS (0: none) --checkpoint-dir DIR
 *        [--managed-memory SIZE] [--network-memory SIZE] [--set key=value]...
 * </pre>
 */
public final class RunSql {
    private RunSql() {}

    public static void main(String[] args) {
        int code;
        try {
            System.out.println(run(args));
            System.out.flush();
            code = 0;
        } catch (Throwable error) {
            System.err.println("RunSql: error: " + describe(error));
            error.printStackTrace(System.err);
            code = 1;
        }
        // Flink leaves non-daemon threads behind: end the JVM here.
        System.exit(code);
    }

    private static String describe(Throwable error) {
        StringBuilder text = new StringBuilder();
        for (Throwable e = error; e != null; e = e.getCause() == e ? null : e.getCause()) {
            if (text.length() > 0) {
                text.append(": ");
            }
            text.append(e.getMessage() != null ? e.getMessage() : e.getClass().getName());
        }
        return text.toString();
    }

    /** Runs the script {@code args} name; the JSON line. */
    static String run(String[] args) throws Exception {
        String sqlFile = null;
        int parallelism = 1;
        long interval = 0;
        String checkpointDir = null;
        String managed = null;
        String network = null;
        List<String[]> extra = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("argument " + arg + " needs a value");
            }
            String value = args[++i];
            switch (arg) {
                case "--sql": sqlFile = value; break;
                case "--parallelism": parallelism = Integer.parseInt(value); break;
                case "--checkpoint-interval-ms": interval = Long.parseLong(value); break;
                case "--checkpoint-dir": checkpointDir = value; break;
                case "--managed-memory": managed = value; break;
                case "--network-memory": network = value; break;
                case "--set": {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("--set takes key=value, not " + value);
                    }
                    extra.add(new String[] {value.substring(0, eq).trim(), value.substring(eq + 1).trim()});
                    break;
                }
                default:
                    throw new IllegalArgumentException("unknown argument " + arg
                            + " (usage: --sql FILE --parallelism P --checkpoint-interval-ms MS --checkpoint-dir DIR"
                            + " [--managed-memory SIZE] [--network-memory SIZE] [--set key=value]...)");
            }
        }
        if (sqlFile == null) {
            throw new IllegalArgumentException("--sql FILE is required");
        }
        if (parallelism < 1) {
            throw new IllegalArgumentException("--parallelism must be 1 or more");
        }
        if (checkpointDir == null) {
            checkpointDir = Files.createTempDirectory("flink-checkpoints").toString();
        }
        List<String> statements =
                splitStatements(new String(Files.readAllBytes(Path.of(sqlFile)), StandardCharsets.UTF_8));

        Configuration conf = new Configuration();
        conf.setString("execution.runtime-mode", "STREAMING");
        conf.setString("parallelism.default", Integer.toString(parallelism));
        conf.setString("taskmanager.numberOfTaskSlots", Integer.toString(parallelism));
        conf.setString("state.backend.type", "rocksdb");
        conf.setString("execution.checkpointing.incremental", "true");
        conf.setString("execution.checkpointing.storage", "filesystem");
        conf.setString("execution.checkpointing.dir", new File(checkpointDir).getAbsoluteFile().toURI().toString());
        if (interval > 0) {
            conf.setString("execution.checkpointing.interval", interval + " ms");
        }
        conf.setString("execution.checkpointing.checkpoints-after-tasks-finish", "false");
        conf.setString("taskmanager.memory.managed.size",
                managed != null ? managed : (256L * parallelism) + "m");
        String networkSize = network != null ? network : Math.max(128L, 32L * parallelism) + "m";
        conf.setString("taskmanager.memory.network.min", networkSize);
        conf.setString("taskmanager.memory.network.max", networkSize);
        for (String[] pair : extra) {
            conf.setString(pair[0], pair[1]);
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(conf);
        StreamTableEnvironment tables =
                StreamTableEnvironment.create(env, EnvironmentSettings.newInstance().inStreamingMode().build());

        long events = 0;
        long netRuntime = 0;
        long wallNanos = 0;
        int jobs = 0;
        for (String statement : statements) {
            long submitted = System.nanoTime();
            TableResult result = tables.executeSql(statement);
            if (result.getJobClient().isPresent()) {
                JobClient client = result.getJobClient().get();
                JobExecutionResult done = client.getJobExecutionResult().get();
                wallNanos += System.nanoTime() - submitted;
                jobs++;
                netRuntime += done.getNetRuntime();
                Object counted = done.getAccumulatorResult(NexmarkTableSource.EVENTS_ACCUMULATOR);
                if (counted instanceof Number) {
                    events += ((Number) counted).longValue();
                }
            }
        }
        if (jobs == 0) {
            throw new IllegalArgumentException(sqlFile + " has no statement that runs a job (INSERT)");
        }
        return String.format(Locale.ROOT,
                "{\"events\": %d, \"net_runtime_ms\": %d, \"wall_ms\": %d, \"seconds\": %.3f, \"peak_rss_bytes\": %d}",
                events, netRuntime, wallNanos / 1_000_000, netRuntime / 1000.0, peakRssBytes());
    }

    /** The process's peak resident set (VmHWM), in bytes; 0 where /proc does not tell. */
    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    String[] parts = line.substring(6).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024;
                }
            }
        } catch (Exception e) {
            // not Linux
        }
        return 0;
    }

    /**
     * The statements of {@code script}: split at the semicolons that end statements (not in
     * quotes, backticks or comments), trimmed, blank ones (or comments only) left out.
     */
    public static List<String> splitStatements(String script) {
        List<String> statements = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        boolean meaningful = false;
        int i = 0;
        int n = script.length();
        while (i < n) {
            char c = script.charAt(i);
            if (c == '-' && i + 1 < n && script.charAt(i + 1) == '-') {
                int end = script.indexOf('\n', i);
                end = end < 0 ? n : end;
                current.append(script, i, end);
                i = end;
            } else if (c == '/' && i + 1 < n && script.charAt(i + 1) == '*') {
                int end = script.indexOf("*/", i + 2);
                end = end < 0 ? n : end + 2;
                current.append(script, i, end);
                i = end;
            } else if (c == '\'' || c == '`' || c == '"') {
                int j = i + 1;
                while (j < n) {
                    if (script.charAt(j) == c) {
                        if (j + 1 < n && script.charAt(j + 1) == c) {
                            j += 2; // a doubled quote inside
                            continue;
                        }
                        break;
                    }
                    j++;
                }
                int end = Math.min(j + 1, n);
                current.append(script, i, end);
                meaningful = true;
                i = end;
            } else if (c == ';') {
                if (meaningful) {
                    statements.add(current.toString().trim());
                }
                current.setLength(0);
                meaningful = false;
                i++;
            } else {
                current.append(c);
                if (!Character.isWhitespace(c)) {
                    meaningful = true;
                }
                i++;
            }
        }
        if (meaningful) {
            statements.add(current.toString().trim());
        }
        return statements;
    }
}
