package strom.bench.flink;

import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import strom.bench.flink.nexmark.Event;
import strom.bench.flink.nexmark.NexmarkGenerator;
import strom.bench.flink.nexmark.NexmarkOptions;

/**
 * Prints Nexmark events 0..N-1, one a line, tab-separated, to compare with Strom's generator:
 *
 * <pre>
 * NexmarkEvents --count N --rate R --base-time T
 * person:  0 n id name emailAddress creditCard city state dateTime extra
 * auction: 1 n id itemName description initialBid reserve dateTime expires seller category extra
 * bid:     2 n auction bidder price channel url dateTime extra
 * </pre>
 */
public final class NexmarkEvents {
    private NexmarkEvents() {}

    public static void main(String[] args) throws Exception {
        long count = -1;
        long rate = 10_000;
        long baseTime = 0;
        try {
            for (int i = 0; i < args.length; i += 2) {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("argument " + args[i] + " needs a value");
                }
                String value = args[i + 1];
                switch (args[i]) {
                    case "--count": count = Long.parseLong(value); break;
                    case "--rate": rate = Long.parseLong(value); break;
                    case "--base-time": baseTime = Long.parseLong(value); break;
                    default: throw new IllegalArgumentException("unknown argument " + args[i]);
                }
            }
            if (count < 0 || rate < 1) {
                throw new IllegalArgumentException("usage: --count N --rate R (1 or more) --base-time T");
            }
        } catch (IllegalArgumentException e) {
            System.err.println("NexmarkEvents: error: " + e.getMessage());
            System.exit(2);
            return;
        }
        NexmarkOptions options = new NexmarkOptions();
        options.firstEventRate = rate;
        options.baseTime = baseTime;
        NexmarkGenerator generator = new NexmarkGenerator(options);
        Writer out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
        StringBuilder line = new StringBuilder(1024);
        for (long n = 0; n < count; n++) {
            line.setLength(0);
            format(n, generator.event(n), line);
            line.append('\n');
            out.append(line);
        }
        out.flush();
    }

    /** Event {@code n}'s line, without its newline. */
    public static void format(long n, Event event, StringBuilder line) {
        line.append(event.type()).append('\t').append(n).append('\t');
        if (event instanceof Event.Person) {
            Event.Person p = (Event.Person) event;
            line.append(p.id).append('\t').append(p.name).append('\t').append(p.emailAddress).append('\t')
                    .append(p.creditCard).append('\t').append(p.city).append('\t').append(p.state).append('\t')
                    .append(p.dateTime).append('\t').append(p.extra);
        } else if (event instanceof Event.Auction) {
            Event.Auction a = (Event.Auction) event;
            line.append(a.id).append('\t').append(a.itemName).append('\t').append(a.description).append('\t')
                    .append(a.initialBid).append('\t').append(a.reserve).append('\t').append(a.dateTime)
                    .append('\t').append(a.expires).append('\t').append(a.seller).append('\t').append(a.category)
                    .append('\t').append(a.extra);
        } else {
            Event.Bid b = (Event.Bid) event;
            line.append(b.auction).append('\t').append(b.bidder).append('\t').append(b.price).append('\t')
                    .append(b.channel()).append('\t').append(b.url()).append('\t').append(b.dateTime).append('\t')
                    .append(b.extra);
        }
    }
}
