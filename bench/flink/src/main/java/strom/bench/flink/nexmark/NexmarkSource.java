package strom.bench.flink.nexmark;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.table.data.RowData;

/** The events of a {@code nexmark} table as a FLIP-27 source of rows, in 16 splits. */
public final class NexmarkSource
        implements Source<RowData, NexmarkSplit, NexmarkEnumeratorState>, ResultTypeQueryable<RowData> {
    private static final long serialVersionUID = 1L;

    private final NexmarkOptions options;
    private final RowMaker rows;
    private final TypeInformation<RowData> producedType;

    public NexmarkSource(NexmarkOptions options, RowMaker rows, TypeInformation<RowData> producedType) {
        this.options = options;
        this.rows = rows;
        this.producedType = producedType;
    }

    @Override
    public Boundedness getBoundedness() {
        return options.bounded() ? Boundedness.BOUNDED : Boundedness.CONTINUOUS_UNBOUNDED;
    }

    @Override
    public SourceReader<RowData, NexmarkSplit> createReader(SourceReaderContext context) {
        return new NexmarkReader(options, rows);
    }

    @Override
    public SplitEnumerator<NexmarkSplit, NexmarkEnumeratorState> createEnumerator(
            SplitEnumeratorContext<NexmarkSplit> context) {
        List<NexmarkSplit> splits = new ArrayList<>();
        for (int s = 0; s < NexmarkGenerator.SPLITS; s++) {
            splits.add(new NexmarkSplit(s, 0, options.baseTime));
        }
        return new NexmarkEnumerator(context, splits);
    }

    @Override
    public SplitEnumerator<NexmarkSplit, NexmarkEnumeratorState> restoreEnumerator(
            SplitEnumeratorContext<NexmarkSplit> context, NexmarkEnumeratorState state) {
        return new NexmarkEnumerator(context, state.unassigned);
    }

    @Override
    public SimpleVersionedSerializer<NexmarkSplit> getSplitSerializer() {
        return NexmarkSplit.Serializer.INSTANCE;
    }

    @Override
    public SimpleVersionedSerializer<NexmarkEnumeratorState> getEnumeratorCheckpointSerializer() {
        return NexmarkEnumeratorState.Serializer.INSTANCE;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
