package strom.bench.flink.nexmark;

import java.io.Serializable;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code nexmark} connector's settings, with nexmark-flink's option names, read as Strom
 * reads them (runtime/src/sql/nexmark.rs {@code NexmarkOptions::from_options}).
 */
public final class NexmarkOptions implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Every option the connector takes. */
    public static final String[] KEYS = {
        "first-event.rate", "next-event.rate", "events.num", "stop-at", "keep-alive", "max-emit-speed",
        "rate.limited", "rate.shape", "rate.period", "person.proportion", "auction.proportion",
        "bid.proportion", "bid.hot-ratio.auctions", "bid.hot-ratio.bidders", "auction.hot-ratio.sellers",
        "person.avg-size", "auction.avg-size", "bid.avg-size",
    };

    public long firstEventRate = 10_000;
    public long nextEventRate = 10_000;
    /** The number of events; 0: unbounded. */
    public long events = 0;
    public boolean keepAlive = false;
    public boolean maxEmitSpeed = true;
    public long personProportion = 1;
    public long auctionProportion = 3;
    public long bidProportion = 46;
    public long hotAuctionRatio = 2;
    public long hotBidderRatio = 4;
    public long hotSellerRatio = 4;
    public long avgPersonSize = 200;
    public long avgAuctionSize = 500;
    public long avgBidSize = 100;
    /** The event time of event 0, in ms since the epoch. */
    public long baseTime = 0;

    /** nexmark-flink's defaults, at base time 0. */
    public NexmarkOptions() {}

    public NexmarkOptions copy() {
        NexmarkOptions o = new NexmarkOptions();
        o.firstEventRate = firstEventRate;
        o.nextEventRate = nextEventRate;
        o.events = events;
        o.keepAlive = keepAlive;
        o.maxEmitSpeed = maxEmitSpeed;
        o.personProportion = personProportion;
        o.auctionProportion = auctionProportion;
        o.bidProportion = bidProportion;
        o.hotAuctionRatio = hotAuctionRatio;
        o.hotBidderRatio = hotBidderRatio;
        o.hotSellerRatio = hotSellerRatio;
        o.avgPersonSize = avgPersonSize;
        o.avgAuctionSize = avgAuctionSize;
        o.avgBidSize = avgBidSize;
        o.baseTime = baseTime;
        return o;
    }

    public NexmarkOptions withBaseTime(long baseTime) {
        NexmarkOptions o = copy();
        o.baseTime = baseTime;
        return o;
    }

    public boolean bounded() {
        return events > 0;
    }

    /** The settings {@code given} names (unknown keys are left to the caller), at base time now. */
    public static NexmarkOptions parse(Map<String, String> given) {
        NexmarkOptions o = new NexmarkOptions();
        o.firstEventRate = whole(given, "first-event.rate", 10_000, 1, "events");
        o.nextEventRate = whole(given, "next-event.rate", 10_000, 1, "events");
        long events = whole(given, "events.num", 0, 0, "events");
        String stopAt = given.get("stop-at");
        if (stopAt != null) {
            long value;
            try {
                value = Long.parseLong(stopAt.trim());
            } catch (NumberFormatException e) {
                throw invalid("stop-at", stopAt, "a whole number");
            }
            if (value >= 0) {
                events = events > 0 ? Math.min(events, value) : value;
            }
        }
        o.events = events;
        o.keepAlive = flag(given, "keep-alive", false);
        o.maxEmitSpeed = flag(given, "max-emit-speed", true);
        flag(given, "rate.limited", false);
        String shape = given.get("rate.shape");
        if (shape != null) {
            String s = shape.trim().toLowerCase(Locale.ROOT);
            if (!s.equals("square") && !s.equals("sine")) {
                throw invalid("rate.shape", shape, "SQUARE or SINE");
            }
        }
        String period = given.get("rate.period");
        if (period != null && durationMillis(period) < 0) {
            throw invalid("rate.period", period, "a duration such as '600 s'");
        }
        o.personProportion = whole(given, "person.proportion", 1, 1, "events");
        o.auctionProportion = whole(given, "auction.proportion", 3, 1, "events");
        o.bidProportion = whole(given, "bid.proportion", 46, 0, "events");
        o.hotAuctionRatio = whole(given, "bid.hot-ratio.auctions", 2, 1, "events");
        o.hotBidderRatio = whole(given, "bid.hot-ratio.bidders", 4, 1, "events");
        o.hotSellerRatio = whole(given, "auction.hot-ratio.sellers", 4, 1, "events");
        o.avgPersonSize = size(given, "person.avg-size", 200);
        o.avgAuctionSize = size(given, "auction.avg-size", 500);
        o.avgBidSize = size(given, "bid.avg-size", 100);
        o.baseTime = System.currentTimeMillis();
        return o;
    }

    private static IllegalArgumentException invalid(String key, String value, String expected) {
        return new IllegalArgumentException(
                "nexmark: option '" + key + "' = '" + value + "': expected " + expected);
    }

    private static long whole(Map<String, String> given, String key, long dflt, long least, String what) {
        String text = given.get(key);
        if (text == null) {
            return dflt;
        }
        try {
            long value = Long.parseLong(text.trim());
            if (value >= least) {
                return value;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw invalid(key, text, "a whole number of " + what + ", " + least + " or more");
    }

    private static boolean flag(Map<String, String> given, String key, boolean dflt) {
        String text = given.get(key);
        if (text == null) {
            return dflt;
        }
        switch (text.trim().toLowerCase(Locale.ROOT)) {
            case "true":
                return true;
            case "false":
                return false;
            default:
                throw invalid(key, text, "true or false");
        }
    }

    private static long size(Map<String, String> given, String key, long dflt) {
        String text = given.get(key);
        if (text == null) {
            return dflt;
        }
        long bytes = memoryBytes(text);
        if (bytes < 0) {
            throw invalid(key, text, "a size such as '200b' or '1 kb'");
        }
        return bytes;
    }

    /** A memory size as Flink writes one, in bytes; -1 when it is none. */
    static long memoryBytes(String text) {
        String[] parts = numberAndUnit(text);
        if (parts == null) {
            return -1;
        }
        long scale;
        switch (parts[1]) {
            case "": case "b": case "bytes": scale = 1; break;
            case "k": case "kb": case "kibibytes": scale = 1L << 10; break;
            case "m": case "mb": case "mebibytes": scale = 1L << 20; break;
            case "g": case "gb": case "gibibytes": scale = 1L << 30; break;
            case "t": case "tb": case "tebibytes": scale = 1L << 40; break;
            default: return -1;
        }
        try {
            return Math.multiplyExact(Long.parseLong(parts[0]), scale);
        } catch (ArithmeticException | NumberFormatException e) {
            return -1;
        }
    }

    /** A duration as Flink writes one, in ms; -1 when it is none. */
    static long durationMillis(String text) {
        String[] parts = numberAndUnit(text);
        if (parts == null) {
            return -1;
        }
        long scale;
        switch (parts[1]) {
            case "": case "ms": case "milli": case "millis": case "millisecond": case "milliseconds": scale = 1; break;
            case "s": case "sec": case "secs": case "second": case "seconds": scale = 1_000; break;
            case "m": case "min": case "minute": case "minutes": scale = 60_000; break;
            case "h": case "hour": case "hours": scale = 3_600_000; break;
            case "d": case "day": case "days": scale = 86_400_000; break;
            default: return -1;
        }
        try {
            return Math.multiplyExact(Long.parseLong(parts[0]), scale);
        } catch (ArithmeticException | NumberFormatException e) {
            return -1;
        }
    }

    private static String[] numberAndUnit(String text) {
        String t = text.trim();
        int digits = 0;
        while (digits < t.length() && t.charAt(digits) >= '0' && t.charAt(digits) <= '9') {
            digits++;
        }
        if (digits == 0) {
            return null;
        }
        return new String[] {t.substring(0, digits), t.substring(digits).trim().toLowerCase(Locale.ROOT)};
    }
}
