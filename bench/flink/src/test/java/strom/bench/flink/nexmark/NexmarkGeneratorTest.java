package strom.bench.flink.nexmark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import strom.bench.flink.NexmarkEvents;

/** The pinned values and checks of the Rust generator's tests (runtime/src/sql/nexmark.rs). */
class NexmarkGeneratorTest {
    /** 2023-11-14T22:13:20Z. */
    static final long BASE = 1_700_000_000_000L;

    static NexmarkGenerator generator() {
        NexmarkOptions options = new NexmarkOptions();
        options.baseTime = BASE;
        return new NexmarkGenerator(options);
    }

    static Event.Person person(NexmarkGenerator g, long n) {
        return (Event.Person) g.event(n);
    }

    static Event.Auction auction(NexmarkGenerator g, long n) {
        return (Event.Auction) g.event(n);
    }

    static Event.Bid bid(NexmarkGenerator g, long n) {
        return (Event.Bid) g.event(n);
    }

    @Test
    void theEventMixIsTheProportionsExactly() {
        NexmarkGenerator g = generator();
        long[] counts = new long[3];
        for (long n = 0; n < 1000; n++) {
            counts[g.event(n).type()]++;
        }
        assertArrayEquals(new long[] {20, 60, 920}, counts);
        assertEquals(20, g.count(Event.PERSON, 1000));
        assertEquals(60, g.count(Event.AUCTION, 1000));
        assertEquals(920, g.count(Event.BID, 1000));
        assertEquals(2, g.count(Event.PERSON, 53));
        assertEquals(5, g.count(Event.AUCTION, 53));
        assertEquals(46, g.count(Event.BID, 53));
        NexmarkOptions options = new NexmarkOptions();
        options.personProportion = 2;
        options.auctionProportion = 3;
        options.bidProportion = 5;
        NexmarkGenerator other = new NexmarkGenerator(options);
        long bids = 0;
        for (long n = 0; n < 1000; n++) {
            if (other.eventType(n) == Event.BID) {
                bids++;
            }
        }
        assertEquals(500, bids);
        assertEquals(500, other.count(Event.BID, 1000));
    }

    @Test
    void idsAndTimesOfGivenEventsArePinned() {
        NexmarkGenerator g = generator();
        assertEquals(NexmarkGenerator.FIRST_PERSON_ID, person(g, 0).id);
        assertArrayEquals(new long[] {1000, 1001, 1002},
                new long[] {auction(g, 1).id, auction(g, 2).id, auction(g, 3).id});
        assertEquals(1001, person(g, 50).id);
        assertEquals(1003, auction(g, 51).id);
        assertEquals(1005, auction(g, 53).id);
        assertEquals(2000, person(g, 50_000).id);
        assertEquals(BASE, person(g, 0).dateTime);
        assertEquals(BASE, bid(g, 9).dateTime);
        assertEquals(BASE + 1, bid(g, 10).dateTime);
        assertEquals(BASE + 5_000, person(g, 50_000).dateTime);
        NexmarkOptions slowOptions = new NexmarkOptions();
        slowOptions.firstEventRate = 3;
        slowOptions.baseTime = BASE;
        NexmarkGenerator slow = new NexmarkGenerator(slowOptions);
        assertEquals(BASE + 333, slow.timestamp(1));
        assertEquals(BASE + 1000, slow.timestamp(3));
        List<Long> numbers = new ArrayList<>();
        for (long n = 4; n < 50; n++) {
            numbers.add(n);
        }
        for (long n = 10_004; n < 10_050; n++) {
            numbers.add(n);
        }
        for (long n : numbers) {
            Event.Bid b = bid(g, n);
            long lastAuction = g.lastAuction(n) + NexmarkGenerator.FIRST_AUCTION_ID;
            long lastPerson = g.lastPerson(n) + NexmarkGenerator.FIRST_PERSON_ID;
            assertTrue(b.auction >= 1000 && b.auction <= lastAuction + NexmarkGenerator.AUCTION_ID_LEAD);
            assertTrue(b.bidder >= 1000 && b.bidder <= lastPerson + NexmarkGenerator.PERSON_ID_LEAD);
            assertTrue(b.price >= 100 && b.price <= 100_000_000);
            assertEquals(g.timestamp(n), b.dateTime);
        }
        Event.Auction a = auction(g, 10_001);
        assertTrue(a.expires > a.dateTime);
        assertTrue(a.reserve > a.initialBid);
        assertTrue(a.category >= 10 && a.category < 15);
        StringBuilder one = new StringBuilder();
        StringBuilder two = new StringBuilder();
        NexmarkEvents.format(12_345, g.event(12_345), one);
        NexmarkEvents.format(12_345, g.event(12_345), two);
        assertEquals(one.toString(), two.toString());
    }

    @Test
    void fieldsFollowTheReferenceDistributions() {
        NexmarkGenerator g = generator();
        List<Event.Bid> bids = new ArrayList<>();
        List<Event.Person> people = new ArrayList<>();
        List<Event.Auction> auctions = new ArrayList<>();
        for (long n = 0; n < 50_000; n++) {
            Event e = g.event(n);
            if (e instanceof Event.Bid) {
                bids.add((Event.Bid) e);
            } else if (e instanceof Event.Person) {
                people.add((Event.Person) e);
            } else {
                auctions.add((Event.Auction) e);
            }
        }
        double hot = bids.stream().filter(b -> (b.auction - 1000) % 100 == 0).count() / (double) bids.size();
        assertTrue(hot >= 0.48 && hot < 0.54, "hot auctions " + hot);
        hot = bids.stream().filter(b -> (b.bidder - 1000) % 100 == 1).count() / (double) bids.size();
        assertTrue(hot >= 0.73 && hot < 0.78, "hot bidders " + hot);
        hot = auctions.stream().filter(a -> (a.seller - 1000) % 100 == 0).count() / (double) auctions.size();
        assertTrue(hot >= 0.71 && hot < 0.80, "hot sellers " + hot);
        List<String> hotChannels = Arrays.asList(NexmarkGenerator.HOT_CHANNELS);
        hot = bids.stream().filter(b -> hotChannels.contains(b.channel())).count() / (double) bids.size();
        assertTrue(hot >= 0.48 && hot < 0.52, "hot channels " + hot);
        assertTrue(bids.stream().allMatch(b -> b.url().startsWith("https://www.nexmark.com/")));
        double cheap = bids.stream().filter(b -> b.price < 1_000).count() / (double) bids.size();
        assertTrue(cheap >= 0.15 && cheap < 0.18, "cheap " + cheap);
        double bidSize = bids.stream().mapToLong(b -> 32 + b.extra.length()).average().orElse(0);
        assertTrue(bidSize >= 95 && bidSize < 105, "bid size " + bidSize);
        double personSize = people.stream()
                .mapToLong(p -> 8 + p.name.length() + p.emailAddress.length() + p.creditCard.length()
                        + p.city.length() + p.state.length() + p.extra.length())
                .average().orElse(0);
        assertTrue(personSize >= 190 && personSize < 210, "person size " + personSize);
        Event.Person first = people.get(0);
        assertTrue(Arrays.asList(NexmarkGenerator.US_STATES).contains(first.state));
        assertTrue(Arrays.asList(NexmarkGenerator.US_CITIES).contains(first.city));
        assertEquals(19, first.creditCard.length());
        assertTrue(first.emailAddress.endsWith(".com"));
    }

    @Test
    void theArithmeticIsRusts() {
        // The unsigned 128-bit product's high half, against BigInteger.
        BigInteger mask = BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);
        Draws draws = new Draws(1, 2);
        for (int i = 0; i < 10_000; i++) {
            long x = draws.next();
            long y = i % 2 == 0 ? draws.next() : (draws.next() >>> (i % 64));
            BigInteger expected = new BigInteger(Long.toUnsignedString(x))
                    .multiply(new BigInteger(Long.toUnsignedString(y))).shiftRight(64).and(mask);
            assertEquals(expected.longValue(), Draws.unsignedMultiplyHigh(x, y));
        }
        // f64::round: halves away from zero.
        assertEquals(3.0, Draws.roundHalfAway(2.5));
        assertEquals(-3.0, Draws.roundHalfAway(-2.5));
        assertEquals(0.0, Draws.roundHalfAway(0.49999999999999994));
        assertEquals(1.0, Draws.roundHalfAway(0.5));
        assertEquals(4503599627370497.0, Draws.roundHalfAway(4503599627370497.0));
        assertEquals(20, Draws.roundToLong(100 * 0.2));
        // Strings: the specials ' ' trimmed at the ends, '_' kept.
        for (long n = 0; n < 2000; n++) {
            Draws d = new Draws(7, n);
            String spaced = d.string(20, ' ');
            assertEquals(spaced.strip(), spaced);
            assertTrue(spaced.length() < 20);
        }
        // The channels: the hot four, then channel-0..9999.
        Channels channels = Channels.get();
        assertEquals(10_004, channels.count());
        assertEquals("Google", channels.name(0));
        assertEquals("channel-0", channels.name(4));
        assertEquals("channel-9999", channels.name(10_003));
        assertEquals(1 << 20, ExtraPool.bytes().length);
    }

    @Test
    void optionsAreReadWithFlinksNamesAndChecked() {
        NexmarkOptions o = NexmarkOptions.parse(Map.of(
                "first-event.rate", "1000",
                "events.num", "5000",
                "stop-at", "4000",
                "bid.proportion", "20",
                "bid.avg-size", "1 kb",
                "max-emit-speed", "false",
                "rate.shape", "SINE",
                "rate.period", "10 min"));
        assertEquals(1000, o.firstEventRate);
        assertEquals(4000, o.events);
        assertEquals(20, o.bidProportion);
        assertEquals(1024, o.avgBidSize);
        assertTrue(!o.maxEmitSpeed);
        assertEquals(0, NexmarkOptions.parse(Map.of()).events);
        assertEquals(0, NexmarkOptions.parse(Map.of("events.num", "0")).events);
        String[][] bad = {
            {"first-event.rate", "0", "expected a whole number of events, 1 or more"},
            {"person.proportion", "-1", "1 or more"},
            {"bid.avg-size", "lots", "a size such as"},
            {"rate.shape", "triangle", "SQUARE or SINE"},
            {"keep-alive", "yes", "true or false"},
        };
        for (String[] c : bad) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(
                    IllegalArgumentException.class, () -> NexmarkOptions.parse(Map.of(c[0], c[1])));
            assertTrue(e.getMessage().contains("option '" + c[0] + "' = '" + c[1] + "'")
                    && e.getMessage().contains(c[2]), e.getMessage());
        }
    }
}
