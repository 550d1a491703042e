package strom.bench.flink.nexmark;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.TreeMap;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;

/**
 * Gives split {@code s} to reader {@code s % parallelism}, all of a reader's splits as it
 * registers, and then tells it there are no more.
 */
final class NexmarkEnumerator implements SplitEnumerator<NexmarkSplit, NexmarkEnumeratorState> {
    private final SplitEnumeratorContext<NexmarkSplit> context;
    /** Unassigned splits by index. */
    private final TreeMap<Integer, NexmarkSplit> unassigned = new TreeMap<>();

    NexmarkEnumerator(SplitEnumeratorContext<NexmarkSplit> context, List<NexmarkSplit> unassigned) {
        this.context = context;
        for (NexmarkSplit split : unassigned) {
            this.unassigned.put(split.index, split);
        }
    }

    @Override
    public void start() {
        // Readers get their splits as they register (addReader).
    }

    private void assign(int reader) {
        int parallelism = context.currentParallelism();
        List<NexmarkSplit> mine = new ArrayList<>();
        for (Iterator<NexmarkSplit> it = unassigned.values().iterator(); it.hasNext(); ) {
            NexmarkSplit split = it.next();
            if (split.index % parallelism == reader) {
                mine.add(split);
                it.remove();
            }
        }
        if (!mine.isEmpty()) {
            context.assignSplits(new SplitsAssignment<>(java.util.Map.of(reader, mine)));
        }
        context.signalNoMoreSplits(reader);
    }

    @Override
    public void handleSplitRequest(int subtaskId, String requesterHostname) {}

    @Override
    public void addSplitsBack(List<NexmarkSplit> splits, int subtaskId) {
        for (NexmarkSplit split : splits) {
            unassigned.put(split.index, split);
        }
    }

    @Override
    public void addReader(int subtaskId) {
        assign(subtaskId);
    }

    @Override
    public NexmarkEnumeratorState snapshotState(long checkpointId) {
        return new NexmarkEnumeratorState(new ArrayList<>(unassigned.values()));
    }

    @Override
    public void close() {}
}
