package strom.bench.flink.nexmark;

import java.io.Serializable;
import java.util.List;
import java.util.Locale;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.RowType;

/**
 * Makes the declared physical row of an event: the columns {@code event_type}, {@code person},
 * {@code auction} and {@code bid} found by name (any case, any order, any subset), and so are the
 * fields of the ROWs; values become the declared type (numbers to narrower numbers or text, text
 * stays text, times to TIMESTAMP / TIMESTAMP_LTZ or BIGINT milliseconds).
 */
public final class RowMaker implements Serializable {
    private static final long serialVersionUID = 1L;

    private static final String[] PERSON_FIELDS = {
        "id", "name", "emailAddress", "creditCard", "city", "state", "dateTime", "extra",
    };
    private static final String[] AUCTION_FIELDS = {
        "id", "itemName", "description", "initialBid", "reserve", "dateTime", "expires", "seller", "category",
        "extra",
    };
    private static final String[] BID_FIELDS = {"auction", "bidder", "price", "channel", "url", "dateTime", "extra"};

    private enum Kind { LONG, TEXT, TIME }

    private enum Target { INT, BIGINT, SMALLINT, TINYINT, DOUBLE, TEXT, TIMESTAMP }

    /** Per column: -1 for event_type, else the event type its ROW holds. */
    private final int[] columnEvent;
    private final Target[] columnTarget;
    /** Per column of a ROW: the index of each field in the kind's field list, and its target. */
    private final int[][] fieldIds;
    private final Target[][] fieldTargets;
    private final Kind[][] fieldKinds;

    public RowMaker(RowType physical) {
        int columns = physical.getFieldCount();
        columnEvent = new int[columns];
        columnTarget = new Target[columns];
        fieldIds = new int[columns][];
        fieldTargets = new Target[columns][];
        fieldKinds = new Kind[columns][];
        List<RowType.RowField> fields = physical.getFields();
        for (int c = 0; c < columns; c++) {
            RowType.RowField column = fields.get(c);
            String name = column.getName();
            String[] known;
            switch (name.toLowerCase(Locale.ROOT)) {
                case "event_type":
                    columnEvent[c] = -1;
                    columnTarget[c] = target(column.getType(), Kind.LONG, "column " + name);
                    continue;
                case "person":
                    columnEvent[c] = Event.PERSON;
                    known = PERSON_FIELDS;
                    break;
                case "auction":
                    columnEvent[c] = Event.AUCTION;
                    known = AUCTION_FIELDS;
                    break;
                case "bid":
                    columnEvent[c] = Event.BID;
                    known = BID_FIELDS;
                    break;
                default:
                    throw new IllegalArgumentException(
                            "the nexmark connector makes the columns event_type, person, auction and bid; " + name
                                    + " is none of them (declare others as computed columns)");
            }
            if (!(column.getType() instanceof RowType)) {
                throw new IllegalArgumentException("column " + name + " is " + column.getType()
                        + ", but it holds events as a ROW<" + String.join(", ", known) + ">");
            }
            if (!column.getType().isNullable()) {
                throw new IllegalArgumentException(
                        "column " + name + " is NOT NULL, but it is null in rows of other events");
            }
            List<RowType.RowField> rowFields = ((RowType) column.getType()).getFields();
            fieldIds[c] = new int[rowFields.size()];
            fieldTargets[c] = new Target[rowFields.size()];
            fieldKinds[c] = new Kind[rowFields.size()];
            for (int f = 0; f < rowFields.size(); f++) {
                RowType.RowField field = rowFields.get(f);
                int id = -1;
                for (int k = 0; k < known.length; k++) {
                    if (known[k].equalsIgnoreCase(field.getName())) {
                        id = k;
                    }
                }
                if (id < 0) {
                    throw new IllegalArgumentException("column " + name + ": field " + field.getName()
                            + " is none of " + String.join(", ", known));
                }
                Kind kind = kindOf(known[id]);
                fieldIds[c][f] = id;
                fieldKinds[c][f] = kind;
                fieldTargets[c][f] = target(field.getType(), kind, "column " + name + ": field " + field.getName());
            }
        }
    }

    private static Kind kindOf(String field) {
        switch (field) {
            case "dateTime":
            case "expires":
                return Kind.TIME;
            case "name": case "emailAddress": case "creditCard": case "city": case "state": case "extra":
            case "itemName": case "description": case "channel": case "url":
                return Kind.TEXT;
            default:
                return Kind.LONG;
        }
    }

    private static Target target(LogicalType type, Kind kind, String what) {
        LogicalTypeRoot root = type.getTypeRoot();
        boolean text = root == LogicalTypeRoot.VARCHAR || root == LogicalTypeRoot.CHAR;
        switch (kind) {
            case TEXT:
                if (text) {
                    return Target.TEXT;
                }
                break;
            case TIME:
                if (root == LogicalTypeRoot.TIMESTAMP_WITHOUT_TIME_ZONE
                        || root == LogicalTypeRoot.TIMESTAMP_WITH_LOCAL_TIME_ZONE) {
                    return Target.TIMESTAMP;
                }
                if (root == LogicalTypeRoot.BIGINT) {
                    return Target.BIGINT;
                }
                break;
            default:
                switch (root) {
                    case BIGINT: return Target.BIGINT;
                    case INTEGER: return Target.INT;
                    case SMALLINT: return Target.SMALLINT;
                    case TINYINT: return Target.TINYINT;
                    case DOUBLE: return Target.DOUBLE;
                    default:
                        if (text) {
                            return Target.TEXT;
                        }
                }
        }
        throw new IllegalArgumentException(what + " is " + type + ", but its values are "
                + (kind == Kind.TEXT ? "VARCHAR" : kind == Kind.TIME ? "TIMESTAMP(3)" : "BIGINT"));
    }

    /** The row of {@code event}. */
    public RowData row(Event event) {
        int type = event.type();
        GenericRowData row = new GenericRowData(columnEvent.length);
        for (int c = 0; c < columnEvent.length; c++) {
            int holds = columnEvent[c];
            if (holds < 0) {
                row.setField(c, convert(type, columnTarget[c]));
            } else if (holds == type) {
                int[] ids = fieldIds[c];
                GenericRowData inner = new GenericRowData(ids.length);
                for (int f = 0; f < ids.length; f++) {
                    inner.setField(f, value(event, ids[f], fieldKinds[c][f], fieldTargets[c][f]));
                }
                row.setField(c, inner);
            }
        }
        return row;
    }

    private static Object value(Event event, int id, Kind kind, Target target) {
        switch (event.type()) {
            case Event.PERSON: {
                Event.Person p = (Event.Person) event;
                switch (id) {
                    case 0: return convert(p.id, target);
                    case 1: return StringData.fromString(p.name);
                    case 2: return StringData.fromString(p.emailAddress);
                    case 3: return StringData.fromString(p.creditCard);
                    case 4: return StringData.fromString(p.city);
                    case 5: return StringData.fromString(p.state);
                    case 6: return time(p.dateTime, target);
                    default: return extra(p.extra);
                }
            }
            case Event.AUCTION: {
                Event.Auction a = (Event.Auction) event;
                switch (id) {
                    case 0: return convert(a.id, target);
                    case 1: return StringData.fromString(a.itemName);
                    case 2: return StringData.fromString(a.description);
                    case 3: return convert(a.initialBid, target);
                    case 4: return convert(a.reserve, target);
                    case 5: return time(a.dateTime, target);
                    case 6: return time(a.expires, target);
                    case 7: return convert(a.seller, target);
                    case 8: return convert(a.category, target);
                    default: return extra(a.extra);
                }
            }
            default: {
                Event.Bid b = (Event.Bid) event;
                switch (id) {
                    case 0: return convert(b.auction, target);
                    case 1: return convert(b.bidder, target);
                    case 2: return convert(b.price, target);
                    case 3: return StringData.fromString(b.channel());
                    case 4: return StringData.fromString(b.url());
                    case 5: return time(b.dateTime, target);
                    default: return extra(b.extra);
                }
            }
        }
    }

    private static StringData extra(Extra extra) {
        String owned = extra.owned();
        return owned != null
                ? StringData.fromString(owned)
                : StringData.fromBytes(ExtraPool.bytes(), extra.start(), extra.length());
    }

    private static Object time(long millis, Target target) {
        return target == Target.TIMESTAMP ? TimestampData.fromEpochMillis(millis) : (Object) millis;
    }

    private static Object convert(long value, Target target) {
        switch (target) {
            case BIGINT: return value;
            case INT: return (int) value;
            case SMALLINT: return (short) value;
            case TINYINT: return (byte) value;
            case DOUBLE: return (double) value;
            default: return StringData.fromString(Long.toString(value));
        }
    }
}
