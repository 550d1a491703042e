package strom.bench.flink.nexmark;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;

/** The {@code nexmark} connector: Strom's Nexmark events (options as nexmark-flink names them). */
public final class NexmarkTableFactory implements DynamicTableSourceFactory {
    public static final String IDENTIFIER = "nexmark";

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return new HashSet<>();
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        Set<ConfigOption<?>> options = new HashSet<>();
        for (String key : NexmarkOptions.KEYS) {
            options.add(ConfigOptions.key(key).stringType().noDefaultValue());
        }
        return options;
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        Map<String, String> given = new HashMap<>(context.getCatalogTable().getOptions());
        given.remove(FactoryUtil.CONNECTOR.key());
        Set<String> unknown = new TreeSet<>(given.keySet());
        unknown.removeAll(Set.of(NexmarkOptions.KEYS));
        if (!unknown.isEmpty()) {
            throw new ValidationException("table " + context.getObjectIdentifier().asSummaryString()
                    + ": unsupported options for connector 'nexmark': " + unknown + "; it takes "
                    + new TreeSet<>(Set.of(NexmarkOptions.KEYS)));
        }
        try {
            NexmarkOptions options = NexmarkOptions.parse(given);
            return new NexmarkTableSource(options, context.getPhysicalRowDataType());
        } catch (IllegalArgumentException e) {
            throw new ValidationException(
                    "table " + context.getObjectIdentifier().asSummaryString() + ": " + e.getMessage(), e);
        }
    }
}
