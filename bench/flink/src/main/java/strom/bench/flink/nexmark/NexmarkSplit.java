package strom.bench.flink.nexmark;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.Objects;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/**
 * Split {@code index} of a {@code nexmark} table (event {@code n} is in split {@code n % 16}) and
 * where it is read from next: {@code position} events of it read, with the table's base time
 * kept so that a restored job goes on with the same event times.
 */
public final class NexmarkSplit implements SourceSplit {
    public final int index;
    public final long position;
    public final long baseTime;

    public NexmarkSplit(int index, long position, long baseTime) {
        this.index = index;
        this.position = position;
        this.baseTime = baseTime;
    }

    @Override
    public String splitId() {
        return Integer.toString(index);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof NexmarkSplit)) {
            return false;
        }
        NexmarkSplit other = (NexmarkSplit) o;
        return index == other.index && position == other.position && baseTime == other.baseTime;
    }

    @Override
    public int hashCode() {
        return Objects.hash(index, position, baseTime);
    }

    @Override
    public String toString() {
        return "NexmarkSplit{index=" + index + ", position=" + position + ", baseTime=" + baseTime + "}";
    }

    void write(DataOutputStream out) throws IOException {
        out.writeInt(index);
        out.writeLong(position);
        out.writeLong(baseTime);
    }

    static NexmarkSplit read(DataInputStream in) throws IOException {
        int index = in.readInt();
        long position = in.readLong();
        long baseTime = in.readLong();
        return new NexmarkSplit(index, position, baseTime);
    }

    /** Serializes splits (version 1: index, position, base time). */
    public static final class Serializer implements SimpleVersionedSerializer<NexmarkSplit> {
        public static final Serializer INSTANCE = new Serializer();

        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(NexmarkSplit split) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(20);
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                split.write(out);
            }
            return bytes.toByteArray();
        }

        @Override
        public NexmarkSplit deserialize(int version, byte[] serialized) throws IOException {
            if (version != 1) {
                throw new IOException("nexmark split: unknown serializer version " + version);
            }
            try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(serialized))) {
                return read(in);
            }
        }
    }
}
