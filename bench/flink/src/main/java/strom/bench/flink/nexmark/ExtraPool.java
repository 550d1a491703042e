package strom.bench.flink.nexmark;

/** The random text {@code extra} columns are slices of (1 MiB of letters, made once). */
public final class ExtraPool {
    static final int LENGTH = 1 << 20;

    private ExtraPool() {}

    private static final class Holder {
        static final byte[] POOL = make();

        private static byte[] make() {
            Draws draws = new Draws(NexmarkGenerator.TABLES_SEED, 0);
            byte[] pool = new byte[LENGTH];
            for (int i = 0; i < LENGTH; i++) {
                pool[i] = (byte) ('a' + (int) draws.below(26));
            }
            return pool;
        }
    }

    /** The pool (ASCII letters); never to be changed. */
    public static byte[] bytes() {
        return Holder.POOL;
    }
}
