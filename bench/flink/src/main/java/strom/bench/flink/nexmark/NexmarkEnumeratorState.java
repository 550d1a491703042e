package strom.bench.flink.nexmark;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/** The enumerator's checkpoint: the splits not assigned to a reader yet. */
public final class NexmarkEnumeratorState {
    public final List<NexmarkSplit> unassigned;

    public NexmarkEnumeratorState(List<NexmarkSplit> unassigned) {
        this.unassigned = Collections.unmodifiableList(new ArrayList<>(unassigned));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof NexmarkEnumeratorState && unassigned.equals(((NexmarkEnumeratorState) o).unassigned);
    }

    @Override
    public int hashCode() {
        return unassigned.hashCode();
    }

    @Override
    public String toString() {
        return "NexmarkEnumeratorState" + unassigned;
    }

    /** Serializes the state (version 1: a count, then the splits). */
    public static final class Serializer implements SimpleVersionedSerializer<NexmarkEnumeratorState> {
        public static final Serializer INSTANCE = new Serializer();

        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(NexmarkEnumeratorState state) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeInt(state.unassigned.size());
                for (NexmarkSplit split : state.unassigned) {
                    split.write(out);
                }
            }
            return bytes.toByteArray();
        }

        @Override
        public NexmarkEnumeratorState deserialize(int version, byte[] serialized) throws IOException {
            if (version != 1) {
                throw new IOException("nexmark enumerator state: unknown serializer version " + version);
            }
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(serialized))) {
                int count = in.readInt();
                List<NexmarkSplit> splits = new ArrayList<>(count);
                for (int i = 0; i < count; i++) {
                    splits.add(NexmarkSplit.read(in));
                }
                return new NexmarkEnumeratorState(splits);
            }
        }
    }
}
