package strom.bench.flink.nexmark;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.logical.RowType;
import org.junit.jupiter.api.Test;
import strom.bench.flink.RunSql;

/** The splits, their serializers and the reader's order. */
class NexmarkSourceTest {
    @Test
    void splitsAndEnumeratorStateRoundTrip() throws Exception {
        NexmarkSplit split = new NexmarkSplit(13, 123_456_789_012L, 1_700_000_000_000L);
        NexmarkSplit.Serializer splits = NexmarkSplit.Serializer.INSTANCE;
        assertEquals(split, splits.deserialize(splits.getVersion(), splits.serialize(split)));
        NexmarkEnumeratorState state = new NexmarkEnumeratorState(
                List.of(split, new NexmarkSplit(0, 0, -5), new NexmarkSplit(15, Long.MAX_VALUE, 0)));
        NexmarkEnumeratorState.Serializer states = NexmarkEnumeratorState.Serializer.INSTANCE;
        assertEquals(state, states.deserialize(states.getVersion(), states.serialize(state)));
        NexmarkEnumeratorState empty = new NexmarkEnumeratorState(List.of());
        assertEquals(empty, states.deserialize(1, states.serialize(empty)));
    }

    /** Collects rows. */
    static final class Rows implements ReaderOutput<RowData> {
        final List<RowData> rows = new ArrayList<>();

        @Override
        public void collect(RowData record) {
            rows.add(record);
        }

        @Override
        public void collect(RowData record, long timestamp) {
            rows.add(record);
        }

        @Override
        public void emitWatermark(Watermark watermark) {}

        @Override
        public void markIdle() {}

        @Override
        public void markActive() {}

        @Override
        public SourceOutput<RowData> createOutputForSplit(String splitId) {
            return this;
        }

        @Override
        public void releaseOutputForSplit(String splitId) {}
    }

    static RowType schema() {
        return (RowType) DataTypes.ROW(
                DataTypes.FIELD("event_type", DataTypes.INT()),
                DataTypes.FIELD("bid", DataTypes.ROW(
                        DataTypes.FIELD("price", DataTypes.STRING()),
                        DataTypes.FIELD("Auction", DataTypes.BIGINT()),
                        DataTypes.FIELD("dateTime", DataTypes.TIMESTAMP(3)))))
                .getLogicalType();
    }

    /** Reads splits {@code indices} of {@code events} events to their end, from {@code from}. */
    static Rows read(NexmarkOptions options, List<NexmarkSplit> splits) throws Exception {
        NexmarkReader reader = new NexmarkReader(options, new RowMaker(schema()));
        reader.addSplits(splits);
        reader.notifyNoMoreSplits();
        Rows out = new Rows();
        InputStatus status;
        int calls = 0;
        do {
            status = reader.pollNext(out);
            calls++;
        } while (status == InputStatus.MORE_AVAILABLE && calls < 100_000);
        assertEquals(InputStatus.END_OF_INPUT, status);
        return out;
    }

    @Test
    void aReaderEmitsItsSplitsEventsInOrderWithTheDeclaredFields() throws Exception {
        NexmarkOptions options = new NexmarkOptions();
        options.events = 1000;
        options.baseTime = 1_700_000_000_000L;
        NexmarkGenerator generator = new NexmarkGenerator(options);
        // Reader 1 of 3: splits 1, 4, 7, 10, 13.
        List<NexmarkSplit> mine = new ArrayList<>();
        List<Long> expected = new ArrayList<>();
        for (int s = 1; s < 16; s += 3) {
            mine.add(new NexmarkSplit(s, 0, options.baseTime));
        }
        for (long n = 0; n < 1000; n++) {
            if (n % 16 % 3 == 1) {
                expected.add(n);
            }
        }
        Rows out = read(options, mine);
        assertEquals(expected.size(), out.rows.size());
        for (int i = 0; i < expected.size(); i++) {
            long n = expected.get(i);
            RowData row = out.rows.get(i);
            Event event = generator.event(n);
            assertEquals(event.type(), row.getInt(0));
            if (event instanceof Event.Bid) {
                RowData bid = row.getRow(1, 3);
                assertEquals(Long.toString(((Event.Bid) event).price), bid.getString(0).toString());
                assertEquals(((Event.Bid) event).auction, bid.getLong(1));
                assertEquals(event.dateTime, bid.getTimestamp(2, 3).getMillisecond());
            } else {
                assertEquals(true, row.isNullAt(1));
            }
        }
        // All 16 splits from positions checkpointed part way: the rest of the events, in order.
        List<NexmarkSplit> restored = new ArrayList<>();
        for (int s = 0; s < 16; s++) {
            restored.add(new NexmarkSplit(s, s < 5 ? 20 : 19, options.baseTime));
        }
        Rows rest = read(options, restored);
        assertEquals(1000 - 309, rest.rows.size());
        assertEquals(generator.event(309).type(), rest.rows.get(0).getInt(0));
    }

    @Test
    void aPacedReaderEmitsTheEventsWhoseTimeHasCome() throws Exception {
        // One event a second, the base time 10.5 s ago: events 0..10 have come (the test has
        // half a second to read them), in splits 0..10 of 16.
        NexmarkOptions options = new NexmarkOptions();
        options.firstEventRate = 1;
        options.maxEmitSpeed = false;
        options.baseTime = System.currentTimeMillis() - 10_500;
        NexmarkReader reader = new NexmarkReader(options, new RowMaker(schema()));
        List<NexmarkSplit> splits = new ArrayList<>();
        for (int s = 0; s < 16; s++) {
            splits.add(new NexmarkSplit(s, 0, options.baseTime));
        }
        reader.addSplits(splits);
        reader.notifyNoMoreSplits();
        Rows out = new Rows();
        InputStatus status;
        do {
            status = reader.pollNext(out);
        } while (status == InputStatus.MORE_AVAILABLE);
        assertEquals(InputStatus.NOTHING_AVAILABLE, status);
        assertEquals(11, out.rows.size());
        // The reader is woken when the next event is due, about a second later.
        reader.isAvailable().get(5, java.util.concurrent.TimeUnit.SECONDS);
        do {
            status = reader.pollNext(out);
        } while (status == InputStatus.MORE_AVAILABLE);
        assertEquals(12, out.rows.size());
    }

    @Test
    void eventsPerSplitSumToTheTotal() {
        for (long total : new long[] {1, 15, 16, 17, 200_000, 1_000_003}) {
            long sum = 0;
            for (int s = 0; s < 16; s++) {
                sum += NexmarkReader.eventsOfSplit(total, s);
            }
            assertEquals(total, sum);
        }
    }

    @Test
    void scriptsSplitAtTheSemicolonsThatEndStatements() {
        List<String> statements = RunSql.splitStatements(
                "CREATE TABLE t (a INT) WITH ('x' = 'a;b');\n -- a comment; here\n"
                        + "INSERT INTO `we;ird` SELECT 'it''s;' FROM t;\n\n  ;  ");
        assertEquals(2, statements.size());
        assertEquals("CREATE TABLE t (a INT) WITH ('x' = 'a;b')", statements.get(0));
        assertEquals("-- a comment; here\nINSERT INTO `we;ird` SELECT 'it''s;' FROM t", statements.get(1));
    }
}
