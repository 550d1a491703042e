package strom.bench.flink;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * The {@code latency} connector (a sink): for every row, the time in its first column (a
 * {@code TIMESTAMP(3)}: an event's time, a window's end) and the wall-clock time the row reached
 * the sink, both in epoch milliseconds. Each subtask writes its pairs, one {@code "time arrival"}
 * line each, to {@code <path>-<subtask>} when it closes.
 */
public final class LatencyTableFactory implements DynamicTableSinkFactory {
    public static final String IDENTIFIER = "latency";
    static final ConfigOption<String> PATH =
            ConfigOptions.key("path").stringType().noDefaultValue().withDescription("file prefix");

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        Set<ConfigOption<?>> options = new HashSet<>();
        options.add(PATH);
        return options;
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return new HashSet<>();
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        var columns = context.getPhysicalRowDataType().getLogicalType().getChildren();
        if (columns.isEmpty() || columns.get(0).getTypeRoot() != LogicalTypeRoot.TIMESTAMP_WITHOUT_TIME_ZONE) {
            throw new ValidationException("table " + context.getObjectIdentifier().asSummaryString()
                    + ": the latency connector needs a TIMESTAMP(3) first column");
        }
        return new LatencyTableSink(helper.getOptions().get(PATH));
    }

    /** The table sink: inserts only. */
    static final class LatencyTableSink implements DynamicTableSink {
        private final String path;

        LatencyTableSink(String path) {
            this.path = path;
        }

        @Override
        public ChangelogMode getChangelogMode(ChangelogMode requested) {
            return ChangelogMode.insertOnly();
        }

        @Override
        public SinkRuntimeProvider getSinkRuntimeProvider(Context context) {
            return SinkV2Provider.of(new LatencySink(path));
        }

        @Override
        public DynamicTableSink copy() {
            return new LatencyTableSink(path);
        }

        @Override
        public String asSummaryString() {
            return "latency";
        }
    }

    /** The sink: one {@link LatencyWriter} per subtask. */
    static final class LatencySink implements Sink<RowData> {
        private static final long serialVersionUID = 1L;
        private final String path;

        LatencySink(String path) {
            this.path = path;
        }

        @Override
        public SinkWriter<RowData> createWriter(WriterInitContext context) {
            return new LatencyWriter(Path.of(path + "-" + context.getTaskInfo().getIndexOfThisSubtask()));
        }
    }

    /** Keeps each row's time and arrival; writes them when closed. */
    static final class LatencyWriter implements SinkWriter<RowData> {
        private final Path file;
        private long[] times = new long[1 << 16];
        private long[] arrivals = new long[1 << 16];
        private int rows;

        LatencyWriter(Path file) {
            this.file = file;
        }

        @Override
        public void write(RowData row, Context context) {
            long arrival = System.currentTimeMillis();
            if (rows == times.length) {
                times = Arrays.copyOf(times, rows * 2);
                arrivals = Arrays.copyOf(arrivals, rows * 2);
            }
            times[rows] = row.getTimestamp(0, 3).getMillisecond();
            arrivals[rows] = arrival;
            rows++;
        }

        @Override
        public void flush(boolean endOfInput) {}

        @Override
        public void close() throws IOException {
            try (BufferedWriter out = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
                for (int i = 0; i < rows; i++) {
                    out.write(times[i] + " " + arrivals[i] + "\n");
                }
            }
        }
    }
}
