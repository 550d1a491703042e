package strom.bench.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class RescaleTest {
    @Test
    void valuesAreStromsIncompressibleValues() {
        // Pinned by runtime/src/pipelines.rs's test of incompressible_value.
        assertEquals(0x894f020b6aae524eL, Mix.mix(7, 0, 3));
        byte[] value = Rescale.incompressibleValue(7, 100);
        assertEquals(100, value.length);
        assertEquals((byte) 0x4e, value[0]);
        assertEquals((byte) 0x89, value[7]);
        long last = Mix.mix(7, 12, 3);
        assertEquals((byte) last, value[96]);
        assertEquals((byte) (last >>> 24), value[99]);
    }
}
