package strom.bench.flink.nexmark;

import static strom.bench.flink.Mix.mix;

/**
 * The random draws of one event, as Strom's {@code Draws} (runtime/src/sql/nexmark.rs):
 * SplitMix64 from a seed made of the event's number. Java longs hold Rust's u64 values;
 * every operation is the wrapping / unsigned one.
 */
final class Draws {
    private long state;

    Draws(long seed, long number) {
        this.state = mix(seed, number, 0);
    }

    long next() {
        state += 0x9e3779b97f4a7c15L;
        long z = state;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** A number in {@code 0..n} ({@code n} above 0, as an unsigned value): the high 64 bits of next * n. */
    long below(long n) {
        return unsignedMultiplyHigh(next(), n);
    }

    /** The high 64 bits of the unsigned 128-bit product (Math.unsignedMultiplyHigh is Java 18+). */
    static long unsignedMultiplyHigh(long x, long y) {
        return Math.multiplyHigh(x, y) + ((x >> 63) & y) + ((y >> 63) & x);
    }

    /** A number in [0, 1). */
    double unit() {
        return (double) (next() >>> 11) / (double) (1L << 53);
    }

    <T> T pick(T[] values) {
        return values[(int) below(values.length)];
    }

    /** A price in cents: 10^(0..6) dollars, log-uniformly. */
    long price() {
        return roundToLong(Math.pow(10.0, unit() * 6.0) * 100.0);
    }

    /** Rust's {@code f64::round} (half away from zero) then {@code as i64} (saturating, NaN 0). */
    static long roundToLong(double x) {
        return (long) roundHalfAway(x);
    }

    /** Rust's {@code f64::round}: to the nearest integer, halves away from zero. */
    static double roundHalfAway(double x) {
        if (Double.isNaN(x) || Double.isInfinite(x)) {
            return x;
        }
        double a = Math.abs(x);
        double f = Math.floor(a);
        // a - f is exact (a and f are within a factor 2 of each other, or f = 0).
        if (a - f >= 0.5) {
            f += 1.0;
        }
        return Math.copySign(f, x);
    }

    /**
     * Letters, one in 13 of them {@code special}, 3 to {@code maxLength - 1} of them, with the
     * whitespace at the ends trimmed (the specials are ' ' and '_': only ' ' is whitespace).
     */
    String string(long maxLength, char special) {
        int length = (int) (NexmarkGenerator.MIN_STRING_LENGTH + below(maxLength - NexmarkGenerator.MIN_STRING_LENGTH));
        char[] text = new char[length];
        for (int i = 0; i < length; i++) {
            long draw = below(13 * 26);
            text[i] = draw < 26 ? special : (char) ('a' + (int) (draw % 26));
        }
        int start = 0;
        int end = length;
        if (Character.isWhitespace(special) || Character.isSpaceChar(special)) {
            while (start < end && text[start] == special) {
                start++;
            }
            while (end > start && text[end - 1] == special) {
                end--;
            }
        }
        return new String(text, start, end - start);
    }

    /**
     * Padding that brings an event of {@code current} bytes to {@code average} bytes on average:
     * {@code length} random letters, a slice of the shared pool when short enough.
     */
    void extra(long current, long average, Extra out) {
        if (Long.compareUnsigned(current, average) > 0) {
            out.setSlice(0, 0);
            return;
        }
        long wanted = average - current;
        long delta = roundToLong((double) wanted * 0.2);
        long length = wanted - delta + (delta == 0 ? 0 : below(2 * delta));
        exactString(length, out);
    }

    private void exactString(long length, Extra out) {
        byte[] pool = ExtraPool.bytes();
        if (length < pool.length / 2) {
            int start = (int) below(pool.length - length);
            out.setSlice(start, (int) length);
        } else {
            char[] text = new char[Math.toIntExact(length)];
            for (int i = 0; i < text.length; i++) {
                text[i] = (char) ('a' + (int) below(26));
            }
            out.setOwned(new String(text));
        }
    }
}
