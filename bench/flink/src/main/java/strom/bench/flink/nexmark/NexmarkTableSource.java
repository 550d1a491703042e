package strom.bench.flink.nexmark;

import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamSource;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.ProviderContext;
import org.apache.flink.table.connector.source.DataStreamScanProvider;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.RowType;

/**
 * A {@code nexmark} table: its events as full rows (no projection pushdown), counted in the
 * accumulator {@link #EVENTS_ACCUMULATOR} by a map chained to the source.
 */
public final class NexmarkTableSource implements ScanTableSource {
    /** The accumulator that sums the events the sources emitted. */
    public static final String EVENTS_ACCUMULATOR = "nexmark-events";

    private final NexmarkOptions options;
    private final DataType physicalType;

    public NexmarkTableSource(NexmarkOptions options, DataType physicalType) {
        this.options = options;
        this.physicalType = physicalType;
        // Checks the columns now, so that a bad table fails at planning.
        new RowMaker((RowType) physicalType.getLogicalType());
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return ChangelogMode.insertOnly();
    }

    @Override
    public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
        TypeInformation<RowData> type = context.createTypeInformation(physicalType);
        RowMaker rows = new RowMaker((RowType) physicalType.getLogicalType());
        NexmarkSource source = new NexmarkSource(options, rows, type);
        boolean bounded = options.bounded();
        return new DataStreamScanProvider() {
            @Override
            public DataStream<RowData> produceDataStream(
                    ProviderContext provider, StreamExecutionEnvironment env) {
                DataStreamSource<RowData> stream =
                        env.fromSource(source, WatermarkStrategy.noWatermarks(), "nexmark", type);
                provider.generateUid("nexmark-source").ifPresent(stream::uid);
                SingleOutputStreamOperator<RowData> counted =
                        stream.map(new CountEvents()).returns(type).name("nexmark-count");
                provider.generateUid("nexmark-count").ifPresent(counted::uid);
                return counted;
            }

            @Override
            public boolean isBounded() {
                return bounded;
            }
        };
    }

    @Override
    public DynamicTableSource copy() {
        return new NexmarkTableSource(options, physicalType);
    }

    @Override
    public String asSummaryString() {
        return "nexmark";
    }

    /** Passes rows on, counting them in the accumulator. */
    static final class CountEvents extends RichMapFunction<RowData, RowData> {
        private static final long serialVersionUID = 1L;
        private transient LongCounter events;

        @Override
        public void open(OpenContext context) {
            events = new LongCounter();
            getRuntimeContext().addAccumulator(EVENTS_ACCUMULATOR, events);
        }

        @Override
        public RowData map(RowData row) {
            events.add(1L);
            return row;
        }
    }
}
