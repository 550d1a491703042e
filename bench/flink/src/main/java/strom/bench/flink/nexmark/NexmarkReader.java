package strom.bench.flink.nexmark;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.table.data.RowData;

/**
 * Reads its splits' events in increasing event number: round {@code r}, then its splits in
 * order (event {@code r * 16 + s}), a batch per call: as fast as the job takes them, or, with
 * {@code max-emit-speed} false, each once the wall clock reaches its event time (as Strom's
 * generator does).
 */
final class NexmarkReader implements SourceReader<RowData, NexmarkSplit> {
    /** Events emitted per {@link #pollNext} call at most. */
    static final int BATCH = 256;

    /** A split being read. */
    private static final class Reading {
        final int index;
        final long baseTime;
        final NexmarkGenerator generator;
        /** How many events the split has (Long.MAX_VALUE: unbounded). */
        final long count;
        long position;

        Reading(NexmarkSplit split, NexmarkGenerator generator, long count) {
            this.index = split.index;
            this.baseTime = split.baseTime;
            this.generator = generator;
            this.count = count;
            this.position = split.position;
        }
    }

    private final NexmarkOptions options;
    private final RowMaker rows;
    private final List<Reading> splits = new ArrayList<>();
    private boolean noMoreSplits;
    private CompletableFuture<Void> available = new CompletableFuture<>();

    NexmarkReader(NexmarkOptions options, RowMaker rows) {
        this.options = options;
        this.rows = rows;
    }

    /** How many events split {@code index} has, of {@code total} events (0: unbounded). */
    static long eventsOfSplit(long total, int index) {
        if (total <= 0) {
            return Long.MAX_VALUE;
        }
        long splits = NexmarkGenerator.SPLITS;
        return total / splits + (index < total % splits ? 1 : 0);
    }

    @Override
    public void start() {}

    @Override
    public InputStatus pollNext(ReaderOutput<RowData> output) {
        int emitted = 0;
        long notYetDue = Long.MAX_VALUE;
        rounds:
        while (emitted < BATCH) {
            // The next round: the least position of the splits not ended.
            long round = Long.MAX_VALUE;
            for (Reading split : splits) {
                if (split.position < split.count && split.position < round) {
                    round = split.position;
                }
            }
            if (round == Long.MAX_VALUE) {
                break;
            }
            for (Reading split : splits) {
                if (split.position == round && split.position < split.count) {
                    long n = split.position * NexmarkGenerator.SPLITS + split.index;
                    if (!options.maxEmitSpeed) {
                        long due = split.generator.timestamp(n);
                        if (due > System.currentTimeMillis()) {
                            // Later events are due later still.
                            notYetDue = due;
                            break rounds;
                        }
                    }
                    output.collect(rows.row(split.generator.event(n)));
                    split.position++;
                    emitted++;
                }
            }
        }
        if (emitted > 0) {
            return InputStatus.MORE_AVAILABLE;
        }
        if (noMoreSplits && notYetDue == Long.MAX_VALUE) {
            return InputStatus.END_OF_INPUT;
        }
        if (available.isDone()) {
            available = new CompletableFuture<>();
        }
        if (notYetDue != Long.MAX_VALUE) {
            // Woken when the next event is due.
            CompletableFuture<Void> waiting = available;
            long waitMs = Math.max(1, notYetDue - System.currentTimeMillis());
            CompletableFuture.delayedExecutor(waitMs, TimeUnit.MILLISECONDS)
                    .execute(() -> waiting.complete(null));
        }
        return InputStatus.NOTHING_AVAILABLE;
    }

    @Override
    public List<NexmarkSplit> snapshotState(long checkpointId) {
        List<NexmarkSplit> state = new ArrayList<>(splits.size());
        for (Reading split : splits) {
            state.add(new NexmarkSplit(split.index, split.position, split.baseTime));
        }
        return state;
    }

    @Override
    public CompletableFuture<Void> isAvailable() {
        return available;
    }

    private void wake() {
        available.complete(null);
    }

    @Override
    public void addSplits(List<NexmarkSplit> added) {
        NexmarkGenerator generator = new NexmarkGenerator(options);
        for (NexmarkSplit split : added) {
            NexmarkGenerator own = split.baseTime == options.baseTime ? generator : generator.atBaseTime(split.baseTime);
            splits.add(new Reading(split, own, eventsOfSplit(options.events, split.index)));
        }
        splits.sort(Comparator.comparingInt(split -> split.index));
        wake();
    }

    @Override
    public void notifyNoMoreSplits() {
        noMoreSplits = true;
        wake();
    }

    @Override
    public void close() {}
}
