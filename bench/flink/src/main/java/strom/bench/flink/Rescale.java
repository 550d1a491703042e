package strom.bench.flink;

import static strom.bench.flink.Mix.mix;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.lib.NumberSequenceSource;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.SavepointFormatType;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.runtime.executiongraph.AccessExecutionGraph;
import org.apache.flink.runtime.executiongraph.AccessExecutionVertex;
import org.apache.flink.runtime.execution.ExecutionState;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.jobgraph.SavepointRestoreSettings;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;

/**
 * Flink's side of the rescale benchmark (strom-bench --suite rescale): a job holding one
 * 100-byte incompressible value per key (the values of Strom's {@code keyed-state} pipeline)
 * on RocksDB with incremental checkpoints on S3 (MinIO), stopped with a savepoint at one
 * parallelism and restored at another, in one MiniCluster (a session cluster in this JVM).
 *
 * <p>Prints one JSON line with each phase's seconds: savepoint (stop-with-savepoint asked
 * until its path is known), teardown (until the job is finished), start (the restored job
 * submitted until every task is restoring) and restore (until every task runs).
 *
 * <pre>
 * java -cp ... strom.bench.flink.Rescale --keys 9259264 --from 1 --to 2 \
 *     --storage s3://bucket/prefix --s3-endpoint http://127.0.0.1:9000
 * </pre>
 *
 * The S3 keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
 */
public final class Rescale {
    /** Values written, across the job's subtasks (they run in this JVM). */
    static final AtomicLong WRITTEN = new AtomicLong();

    /** How long any one step may take. */
    private static final long STEP_NANOS = TimeUnit.MINUTES.toNanos(15);

    private Rescale() {}

    public static void main(String[] args) throws Exception {
        long keys = 1_000_000;
        int valueBytes = 100;
        int from = 1;
        int to = 2;
        long intervalMs = 10_000;
        String storage = null;
        String endpoint = null;
        String region = "us-east-1";
        for (int i = 0; i + 1 < args.length; i += 2) {
            String value = args[i + 1];
            switch (args[i]) {
                case "--keys" -> keys = Long.parseLong(value);
                case "--value-bytes" -> valueBytes = Integer.parseInt(value);
                case "--from" -> from = Integer.parseInt(value);
                case "--to" -> to = Integer.parseInt(value);
                case "--checkpoint-interval-ms" -> intervalMs = Long.parseLong(value);
                case "--storage" -> storage = value;
                case "--s3-endpoint" -> endpoint = value;
                case "--s3-region" -> region = value;
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (storage == null || endpoint == null) {
            throw new IllegalArgumentException("--storage s3://bucket/prefix and --s3-endpoint are needed");
        }

        Configuration conf = new Configuration();
        conf.setString("rest.bind-port", "0");
        conf.setString("state.backend.type", "rocksdb");
        conf.setString("execution.checkpointing.incremental", "true");
        conf.setString("execution.checkpointing.storage", "filesystem");
        conf.setString("execution.checkpointing.dir", storage + "/checkpoints");
        conf.setString("execution.checkpointing.savepoint-dir", storage + "/savepoints");
        conf.setString("execution.checkpointing.interval", intervalMs + " ms");
        conf.setString("s3.endpoint", endpoint);
        // Without it the S3 client asks the server for the bucket's region first,
        // which MinIO does not answer as it expects (it retries for minutes).
        conf.setString("s3.endpoint.region", region);
        // Path-style URLs (MinIO), for Flink's Hadoop S3 file system.
        conf.setString("s3.path.style.access", "true");
        conf.setString("s3.access-key", requiredEnv("AWS_ACCESS_KEY_ID"));
        conf.setString("s3.secret-key", requiredEnv("AWS_SECRET_ACCESS_KEY"));
        int slots = Math.max(from, to);
        conf.setString("taskmanager.memory.managed.size", (256L * slots) + "m");

        // A MiniCluster does not hand its configuration to the file systems (a
        // cluster's entry point does): the S3 settings reach them through this.
        FileSystem.initialize(conf, null);
        MiniClusterConfiguration cluster = new MiniClusterConfiguration.Builder()
                .setConfiguration(conf)
                .setNumTaskManagers(1)
                .setNumSlotsPerTaskManager(slots)
                .build();
        try (MiniCluster mini = new MiniCluster(cluster)) {
            mini.start();

            JobGraph fill = jobGraph(conf, keys, valueBytes, from);
            JobID filling = mini.submitJob(fill).get().getJobID();
            long deadline = System.nanoTime() + STEP_NANOS;
            while (WRITTEN.get() < keys) {
                check(mini, filling, deadline, "writing " + keys + " values");
                Thread.sleep(20);
            }
            // A running job has a recent checkpoint: wait for the first after the values.
            long checkpoints = completedCheckpoints(mini, filling);
            while (completedCheckpoints(mini, filling) == checkpoints) {
                check(mini, filling, deadline, "a checkpoint after the values");
                Thread.sleep(20);
            }

            long stop = System.nanoTime();
            String savepoint = mini.stopWithSavepoint(filling, storage + "/savepoints", false,
                    SavepointFormatType.NATIVE).get(15, TimeUnit.MINUTES);
            long saved = System.nanoTime();
            JobStatus stopped = mini.requestJobResult(filling).get(15, TimeUnit.MINUTES)
                    .getJobStatus().orElse(JobStatus.FAILED);
            long finished = System.nanoTime();
            if (stopped != JobStatus.FINISHED) {
                throw new IllegalStateException("the stopped job ended " + stopped);
            }

            WRITTEN.set(0);
            JobGraph restore = jobGraph(conf, keys, valueBytes, to);
            restore.setSavepointRestoreSettings(SavepointRestoreSettings.forPath(savepoint, false));
            long submitted = System.nanoTime();
            JobID restoring = mini.submitJob(restore).get().getJobID();
            deadline = System.nanoTime() + STEP_NANOS;
            long started = 0;
            while (true) {
                check(mini, restoring, deadline, "the restored job to run");
                List<ExecutionState> states = taskStates(mini, restoring);
                boolean allStarted = !states.isEmpty() && states.stream().allMatch(state ->
                        state == ExecutionState.INITIALIZING || state == ExecutionState.RUNNING);
                if (allStarted && started == 0) {
                    started = System.nanoTime();
                }
                if (!states.isEmpty() && states.stream().allMatch(state -> state == ExecutionState.RUNNING)) {
                    break;
                }
                Thread.sleep(5);
            }
            long running = System.nanoTime();
            if (WRITTEN.get() != 0) {
                throw new IllegalStateException("the restored job wrote " + WRITTEN.get() + " values again");
            }
            mini.cancelJob(restoring).get(1, TimeUnit.MINUTES);
            System.out.printf(
                    "{\"keys\": %d, \"savepoint\": \"%s\", \"savepoint_seconds\": %.3f, \"teardown_seconds\": %.3f,"
                            + " \"start_seconds\": %.3f, \"restore_seconds\": %.3f}%n",
                    keys, savepoint, seconds(saved - stop), seconds(finished - saved),
                    seconds(started - submitted), seconds(running - started));
        }
    }

    private static String requiredEnv(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalArgumentException(name + " must hold the object storage's key");
        }
        return value;
    }

    private static double seconds(long nanos) {
        return nanos / 1e9;
    }

    /** The job: keys 0..keys-1, each key's value written once into keyed state. */
    static JobGraph jobGraph(Configuration conf, long keys, int valueBytes, int parallelism) {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        env.fromSource(new KeysSource(keys), WatermarkStrategy.noWatermarks(), "keys")
                .uid("keys")
                .keyBy(key -> key)
                .process(new WriteValue(valueBytes))
                .uid("values")
                .sinkTo(new DiscardingSink<>());
        return env.getStreamGraph().getJobGraph();
    }

    /** Fails with what was awaited when the job has ended or the deadline passed. */
    private static void check(MiniCluster mini, JobID job, long deadline, String what) throws Exception {
        JobStatus status = mini.getJobStatus(job).get();
        if (status.isGloballyTerminalState()) {
            throw new IllegalStateException("the job ended " + status + " while waiting for " + what);
        }
        if (System.nanoTime() > deadline) {
            throw new IllegalStateException("timed out waiting for " + what);
        }
    }

    private static long completedCheckpoints(MiniCluster mini, JobID job) throws Exception {
        AccessExecutionGraph graph = mini.getExecutionGraph(job).get();
        var stats = graph.getCheckpointStatsSnapshot();
        return stats == null ? 0 : stats.getCounts().getNumberOfCompletedCheckpoints();
    }

    private static List<ExecutionState> taskStates(MiniCluster mini, JobID job) throws Exception {
        AccessExecutionGraph graph = mini.getExecutionGraph(job).get();
        List<ExecutionState> states = new java.util.ArrayList<>();
        for (AccessExecutionVertex vertex : graph.getAllExecutionVertices()) {
            states.add(vertex.getExecutionState());
        }
        return states;
    }

    /** Writes each key's value: {@code valueBytes} bytes drawn from the key, as Strom's. */
    static final class WriteValue extends KeyedProcessFunction<Long, Long, Void> {
        private final int valueBytes;
        private transient ValueState<byte[]> value;

        WriteValue(int valueBytes) {
            this.valueBytes = valueBytes;
        }

        @Override
        public void open(OpenContext context) {
            value = getRuntimeContext().getState(new ValueStateDescriptor<>("value", byte[].class));
        }

        @Override
        public void processElement(Long key, Context context, Collector<Void> out) throws Exception {
            value.update(incompressibleValue(key, valueBytes));
            WRITTEN.incrementAndGet();
        }
    }

    /** Strom's {@code incompressible_value}: little-endian {@code mix(key, i, 3)} for each 8 bytes. */
    static byte[] incompressibleValue(long key, int bytes) {
        byte[] out = new byte[bytes];
        for (int i = 0; i < bytes; i++) {
            long word = mix(key, i / 8, 3);
            out[i] = (byte) (word >>> (8 * (i % 8)));
        }
        return out;
    }

    /**
     * Keys 0..keys-1, as a number sequence whose readers, once their splits are read, stay
     * open (idle) instead of ending the job: the job runs on with its input read, as Strom's
     * {@code keyed-state} pipeline does.
     */
    static final class KeysSource extends NumberSequenceSource {
        KeysSource(long keys) {
            super(0, keys - 1);
        }

        @Override
        public Boundedness getBoundedness() {
            return Boundedness.CONTINUOUS_UNBOUNDED;
        }

        @Override
        public SourceReader<Long, NumberSequenceSplit> createReader(SourceReaderContext context) {
            return new KeptOpen(super.createReader(context));
        }
    }

    /** A reader that idles where the one it wraps would end. */
    static final class KeptOpen implements SourceReader<Long, NumberSequenceSource.NumberSequenceSplit> {
        private final SourceReader<Long, NumberSequenceSource.NumberSequenceSplit> reader;
        private boolean ended;

        KeptOpen(SourceReader<Long, NumberSequenceSource.NumberSequenceSplit> reader) {
            this.reader = reader;
        }

        @Override
        public void start() {
            reader.start();
        }

        @Override
        public InputStatus pollNext(ReaderOutput<Long> output) throws Exception {
            if (ended) {
                return InputStatus.NOTHING_AVAILABLE;
            }
            InputStatus status = reader.pollNext(output);
            if (status == InputStatus.END_OF_INPUT) {
                ended = true;
                return InputStatus.NOTHING_AVAILABLE;
            }
            return status;
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            // Once ended, nothing comes again: a future never completed.
            return ended ? new CompletableFuture<>() : reader.isAvailable();
        }

        @Override
        public List<NumberSequenceSource.NumberSequenceSplit> snapshotState(long checkpointId) {
            return reader.snapshotState(checkpointId);
        }

        @Override
        public void addSplits(List<NumberSequenceSource.NumberSequenceSplit> splits) {
            reader.addSplits(splits);
        }

        @Override
        public void notifyNoMoreSplits() {
            reader.notifyNoMoreSplits();
        }

        @Override
        public void close() throws Exception {
            reader.close();
        }
    }
}
