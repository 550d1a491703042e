package strom.bench.flink.nexmark;

import java.nio.charset.StandardCharsets;

/** An event's {@code extra} padding: a slice of the shared pool, or (long ones) its own text. */
public final class Extra {
    private int start;
    private int length;
    private String owned;

    void setSlice(int start, int length) {
        this.start = start;
        this.length = length;
        this.owned = null;
    }

    void setOwned(String text) {
        this.owned = text;
        this.start = 0;
        this.length = text.length();
    }

    /** Null when a slice of {@link ExtraPool#bytes()}. */
    public String owned() {
        return owned;
    }

    public int start() {
        return start;
    }

    public int length() {
        return length;
    }

    @Override
    public String toString() {
        return owned != null ? owned : new String(ExtraPool.bytes(), start, length, StandardCharsets.US_ASCII);
    }
}
