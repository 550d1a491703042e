package strom.bench.flink;

/** Strom's {@code pipelines::mix}, shared by the Java ports of its generators. */
public final class Mix {
    private Mix() {}

    /**
     * A reproducible number from a seed and two indices (SplitMix64). Java longs hold Rust's
     * u64 values; every operation is the wrapping one.
     */
    public static long mix(long seed, long a, long b) {
        long z = seed ^ (a * 0x9e3779b97f4a7c15L) ^ (b * 0xbf58476d1ce4e5b9L);
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
