package strom.bench.flink.nexmark;

/** The channels bids come through and their URLs: the hot ones, then {@code channel-<i>}. */
public final class Channels {
    private final String[] names;
    private final String[] urls;

    private Channels() {
        int hot = NexmarkGenerator.HOT_CHANNELS.length;
        int count = hot + NexmarkGenerator.CHANNELS_NUMBER;
        names = new String[count];
        urls = new String[count];
        Draws draws = new Draws(NexmarkGenerator.TABLES_SEED, 1);
        for (int i = 0; i < hot; i++) {
            names[i] = NexmarkGenerator.HOT_CHANNELS[i];
            urls[i] = url(draws);
        }
        for (int i = 0; i < NexmarkGenerator.CHANNELS_NUMBER; i++) {
            String address = url(draws);
            // Nine in ten URLs name their channel, by its index's bits reversed (overflow included).
            if (draws.below(10) > 0) {
                address = address + "&channel_id=" + Math.abs(Integer.reverse(i));
            }
            names[hot + i] = "channel-" + i;
            urls[hot + i] = address;
        }
    }

    private static String url(Draws draws) {
        String a = draws.string(5, '_');
        String b = draws.string(5, '_');
        String c = draws.string(5, '_');
        return "https://www.nexmark.com/" + a + "/" + b + "/" + c + "/item.htm?query=1";
    }

    private static final class Holder {
        static final Channels CHANNELS = new Channels();
    }

    public static Channels get() {
        return Holder.CHANNELS;
    }

    public String name(int index) {
        return names[index];
    }

    public String url(int index) {
        return urls[index];
    }

    public int count() {
        return names.length;
    }
}
