package strom.bench.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The latency sink on a paced Nexmark table, in a MiniCluster. */
class LatencyTableFactoryTest {
    @Test
    void everyRowIsWrittenWithItsTimeAndArrival(@TempDir Path dir) throws Exception {
        Path prefix = dir.resolve("latency");
        Path script = dir.resolve("script.sql");
        Files.writeString(script,
                "CREATE TABLE datagen (event_type INT, bid ROW<auction BIGINT, `dateTime` TIMESTAMP(3)>)"
                        + " WITH ('connector' = 'nexmark', 'events.num' = '500', 'first-event.rate' = '200',"
                        + " 'max-emit-speed' = 'false');\n"
                        + "CREATE TABLE bids (t TIMESTAMP(3), auction BIGINT)"
                        + " WITH ('connector' = 'latency', 'path' = '" + prefix + "');\n"
                        + "INSERT INTO bids SELECT bid.`dateTime`, bid.auction FROM datagen WHERE event_type = 2;\n",
                StandardCharsets.UTF_8);
        // 200 events a second: 2.5 s of events, longer than the job takes to start, so an
        // unpaced source would send later events before their time.
        RunSql.run(new String[] {"--sql", script.toString(), "--parallelism", "1",
            "--checkpoint-interval-ms", "0", "--checkpoint-dir", dir.resolve("checkpoints").toString()});
        List<String> lines = Files.readAllLines(Path.of(prefix + "-0"), StandardCharsets.UTF_8);
        // 46 of every 50 events are bids.
        assertEquals(460, lines.size());
        long previous = Long.MIN_VALUE;
        for (String line : lines) {
            String[] parts = line.split(" ");
            long time = Long.parseLong(parts[0]);
            long arrival = Long.parseLong(parts[1]);
            assertTrue(arrival >= time, "a paced event reaches the sink after its time: " + line);
            assertTrue(time >= previous, "one subtask's rows come in event-time order: " + line);
            previous = time;
        }
    }
}
