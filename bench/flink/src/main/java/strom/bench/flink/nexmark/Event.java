package strom.bench.flink.nexmark;

/** A Nexmark event: a {@link Person}, an {@link Auction} or a {@link Bid}. */
public abstract class Event {
    /** The {@code event_type} codes. */
    public static final int PERSON = 0;
    public static final int AUCTION = 1;
    public static final int BID = 2;

    /** The event time, in milliseconds since the epoch. */
    public long dateTime;
    /** Padding to the average size of the event's kind. */
    public final Extra extra = new Extra();

    /** The {@code event_type} code. */
    public abstract int type();

    /** A person registering. */
    public static final class Person extends Event {
        public long id;
        public String name;
        public String emailAddress;
        public String creditCard;
        public String city;
        public String state;

        @Override
        public int type() {
            return PERSON;
        }
    }

    /** An auction opening. */
    public static final class Auction extends Event {
        public long id;
        public String itemName;
        public String description;
        public long initialBid;
        public long reserve;
        public long expires;
        public long seller;
        public long category;

        @Override
        public int type() {
            return AUCTION;
        }
    }

    /** A bid placed. */
    public static final class Bid extends Event {
        public long auction;
        public long bidder;
        public long price;
        /** An index into {@link Channels}: 0..3 the hot channels, 4.. {@code channel-(i-4)}. */
        public int channelIndex;

        public String channel() {
            return Channels.get().name(channelIndex);
        }

        public String url() {
            return Channels.get().url(channelIndex);
        }

        @Override
        public int type() {
            return BID;
        }
    }
}
