package strom.bench.flink.nexmark;

import java.math.BigInteger;

/**
 * Nexmark events by their number, bit for bit as Strom's {@code NexmarkGenerator}
 * (runtime/src/sql/nexmark.rs). Event numbers are non-negative longs.
 */
public final class NexmarkGenerator implements java.io.Serializable {
    private static final long serialVersionUID = 1L;

    public static final int SPLITS = 16;
    public static final long FIRST_PERSON_ID = 1000;
    public static final long FIRST_AUCTION_ID = 1000;
    public static final long FIRST_CATEGORY_ID = 10;
    static final long NUM_CATEGORIES = 5;
    static final long PERSON_ID_LEAD = 10;
    static final long AUCTION_ID_LEAD = 10;
    static final long HOT_SELLER_BATCH = 100;
    static final long HOT_AUCTION_BATCH = 100;
    static final long HOT_BIDDER_BATCH = 100;
    static final long HOT_CHANNELS_RATIO = 2;
    static final int CHANNELS_NUMBER = 10_000;
    static final String[] HOT_CHANNELS = {"Google", "Facebook", "Baidu", "Apple"};
    static final long NUM_ACTIVE_PEOPLE = 1000;
    static final long NUM_IN_FLIGHT_AUCTIONS = 100;
    static final long MIN_STRING_LENGTH = 3;
    static final String[] US_STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
    static final String[] US_CITIES = {
        "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent",
        "Cheyenne",
    };
    static final String[] FIRST_NAMES = {
        "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
    };
    static final String[] LAST_NAMES = {
        "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
    };
    static final long EVENT_SEED = 0x6e65786d61726b00L;
    static final long TABLES_SEED = 0x6e65786d61726b01L;

    private final NexmarkOptions options;
    private final long total;

    public NexmarkGenerator(NexmarkOptions options) {
        this.options = options;
        this.total = options.personProportion + options.auctionProportion + options.bidProportion;
    }

    public NexmarkOptions options() {
        return options;
    }

    /** The same events with event 0 at {@code baseTime}. */
    public NexmarkGenerator atBaseTime(long baseTime) {
        return new NexmarkGenerator(options.withBaseTime(baseTime));
    }

    /** The {@code event_type} code of event {@code n}. */
    public int eventType(long n) {
        long offset = n % total;
        if (offset < options.personProportion) {
            return Event.PERSON;
        } else if (offset < options.personProportion + options.auctionProportion) {
            return Event.AUCTION;
        } else {
            return Event.BID;
        }
    }

    /** How many of events {@code 0..events} are of kind {@code eventType}. */
    public long count(int eventType, long events) {
        long first;
        long proportion;
        switch (eventType) {
            case Event.PERSON:
                first = 0;
                proportion = options.personProportion;
                break;
            case Event.AUCTION:
                first = options.personProportion;
                proportion = options.auctionProportion;
                break;
            default:
                first = options.personProportion + options.auctionProportion;
                proportion = options.bidProportion;
        }
        long rest = events % total;
        return events / total * proportion + Math.min(Math.max(rest - first, 0), proportion);
    }

    /** The event time of event {@code n}: {@code n} inter-event delays after the base time, in ms. */
    public long timestamp(long n) {
        long offset;
        if (n <= Long.MAX_VALUE / 1000) {
            offset = n * 1000 / options.firstEventRate;
        } else {
            offset = BigInteger.valueOf(n).multiply(BigInteger.valueOf(1000))
                    .divide(BigInteger.valueOf(options.firstEventRate)).longValue();
        }
        return options.baseTime + offset;
    }

    /** Event {@code n}. */
    public Event event(long n) {
        Draws draws = new Draws(EVENT_SEED, n);
        long time = timestamp(n);
        switch (eventType(n)) {
            case Event.PERSON:
                return person(n, time, draws);
            case Event.AUCTION:
                return auction(n, time, draws);
            default:
                return bid(n, time, draws);
        }
    }

    /** The latest person id (from 0) at event {@code n}: its own when it is a person. */
    long lastPerson(long n) {
        long offset = Math.min(n % total, options.personProportion - 1);
        return n / total * options.personProportion + offset;
    }

    /** The latest auction id (from 0) at event {@code n}: its own when an auction, -1 before the first. */
    long lastAuction(long n) {
        long epoch = n / total;
        long offset = n % total;
        long auctions = options.auctionProportion;
        if (offset < options.personProportion) {
            return epoch * auctions - 1;
        } else if (offset < options.personProportion + options.auctionProportion) {
            return epoch * auctions + (offset - options.personProportion);
        } else {
            return epoch * auctions + auctions - 1;
        }
    }

    private long randomPerson(long n, Draws draws) {
        long people = lastPerson(n) + 1;
        long active = Math.min(people, NUM_ACTIVE_PEOPLE);
        return people - active + draws.below(active + PERSON_ID_LEAD);
    }

    private long randomAuction(long n, Draws draws) {
        long last = Math.max(lastAuction(n), 0);
        long first = Math.max(last - NUM_IN_FLIGHT_AUCTIONS, 0);
        return first + draws.below(last - first + 1 + AUCTION_ID_LEAD);
    }

    private Event.Person person(long n, long time, Draws draws) {
        Event.Person person = new Event.Person();
        String first = draws.pick(FIRST_NAMES);
        String last = draws.pick(LAST_NAMES);
        person.name = first + " " + last;
        String user = draws.string(7, ' ');
        String domain = draws.string(5, ' ');
        person.emailAddress = user + "@" + domain + ".com";
        StringBuilder card = new StringBuilder(19);
        for (int i = 0; i < 4; i++) {
            if (i > 0) {
                card.append(' ');
            }
            String digits = Long.toString(draws.below(10_000));
            for (int pad = digits.length(); pad < 4; pad++) {
                card.append('0');
            }
            card.append(digits);
        }
        person.creditCard = card.toString();
        person.city = draws.pick(US_CITIES);
        person.state = draws.pick(US_STATES);
        long size = 8 + person.name.length() + person.emailAddress.length() + person.creditCard.length()
                + person.city.length() + person.state.length();
        draws.extra(size, options.avgPersonSize, person.extra);
        person.id = lastPerson(n) + FIRST_PERSON_ID;
        person.dateTime = time;
        return person;
    }

    private Event.Auction auction(long n, long time, Draws draws) {
        Event.Auction auction = new Event.Auction();
        long seller;
        if (draws.below(options.hotSellerRatio) > 0) {
            seller = lastPerson(n) / HOT_SELLER_BATCH * HOT_SELLER_BATCH;
        } else {
            seller = randomPerson(n, draws);
        }
        auction.category = FIRST_CATEGORY_ID + draws.below(NUM_CATEGORIES);
        auction.initialBid = draws.price();
        long eventsForAuctions = NUM_IN_FLIGHT_AUCTIONS * total / options.auctionProportion;
        long horizon = timestamp(n + eventsForAuctions) - time;
        auction.expires = time + 1 + draws.below(Math.max(horizon * 2, 1));
        auction.itemName = draws.string(20, ' ');
        auction.description = draws.string(100, ' ');
        auction.reserve = auction.initialBid + draws.price();
        long size = 8 + auction.itemName.length() + auction.description.length() + 5 * 8;
        draws.extra(size, options.avgAuctionSize, auction.extra);
        auction.id = lastAuction(n) + FIRST_AUCTION_ID;
        auction.dateTime = time;
        auction.seller = seller + FIRST_PERSON_ID;
        return auction;
    }

    private Event.Bid bid(long n, long time, Draws draws) {
        Event.Bid bid = new Event.Bid();
        long auction;
        if (draws.below(options.hotAuctionRatio) > 0) {
            auction = lastAuction(n) / HOT_AUCTION_BATCH * HOT_AUCTION_BATCH;
        } else {
            auction = randomAuction(n, draws);
        }
        long bidder;
        if (draws.below(options.hotBidderRatio) > 0) {
            bidder = lastPerson(n) / HOT_BIDDER_BATCH * HOT_BIDDER_BATCH + 1;
        } else {
            bidder = randomPerson(n, draws);
        }
        bid.price = draws.price();
        if (draws.below(HOT_CHANNELS_RATIO) > 0) {
            bid.channelIndex = (int) draws.below(HOT_CHANNELS.length);
        } else {
            bid.channelIndex = HOT_CHANNELS.length + (int) draws.below(CHANNELS_NUMBER);
        }
        draws.extra(4 * 8, options.avgBidSize, bid.extra);
        bid.auction = auction + FIRST_AUCTION_ID;
        bid.bidder = bidder + FIRST_PERSON_ID;
        bid.dateTime = time;
        return bid;
    }
}
