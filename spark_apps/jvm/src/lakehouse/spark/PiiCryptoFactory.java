package lakehouse.spark;

import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.crypto.FileEncryptionProperties;
import org.apache.parquet.crypto.ParquetCryptoRuntimeException;
import org.apache.parquet.crypto.keytools.KeyToolkit;
import org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory;
import org.apache.parquet.hadoop.api.WriteSupport.WriteContext;
import org.apache.parquet.schema.Type;

/**
 * Parquet modular encryption of the columns that hold card numbers in clear (bronze {@code value},
 * quarantine {@code raw_value}), set once for every Parquet file a Spark session writes.
 *
 * <p>Parquet's {@link PropertiesDrivenCryptoFactory} takes a fixed column list and fails on a file
 * without those columns; this one looks at each file's table directory and schema: a file of a
 * configured table gets its configured columns encrypted (AES-GCM, a random 256-bit data key per column and file,
 * wrapped through {@link FileKms} with the current master key), every other file is written plain.
 * The footer stays plaintext but signed, so readers without keys (Trino) still read the other
 * columns; the encrypted columns carry no statistics in clear. Decryption needs no configuration
 * beyond the KMS: the wrapped keys and the master key's id are in each file.
 */
public final class PiiCryptoFactory extends PropertiesDrivenCryptoFactory {
  /**
   * Hadoop configuration key: which columns to encrypt in which tables, comma-separated
   * {@code <table directory>:<column>} pairs, e.g. {@code bronze/payments:value}: a file under a
   * directory named so (at any depth) gets that top-level column encrypted.
   */
  public static final String COLUMNS = "lakehouse.parquet.encrypted.columns";

  @Override
  public FileEncryptionProperties getFileEncryptionProperties(
      Configuration conf, org.apache.hadoop.fs.Path file, WriteContext context) throws ParquetCryptoRuntimeException {
    String where = file.toUri().getPath();
    Set<String> wanted = new LinkedHashSet<>();
    for (String rule : conf.getTrimmedStringCollection(COLUMNS)) {
      int colon = rule.lastIndexOf(':');
      if (colon <= 0) throw new ParquetCryptoRuntimeException("not <table directory>:<column> in " + COLUMNS + ": " + rule);
      if (where.contains("/" + rule.substring(0, colon) + "/")) wanted.add(rule.substring(colon + 1));
    }
    List<String> present = context.getSchema().getFields().stream()
        .map(Type::getName)
        .filter(wanted::contains)
        .collect(Collectors.toList());
    if (present.isEmpty()) return null; // nothing secret in this file: plain Parquet
    String keyDir = conf.get(FileKms.KEY_DIR);
    if (keyDir == null) throw new ParquetCryptoRuntimeException(FileKms.KEY_DIR + " is not set");
    String master = FileKms.current(Path.of(keyDir));
    Configuration c = new Configuration(conf);
    c.set(COLUMN_KEYS_PROPERTY_NAME, master + ":" + String.join(",", present));
    c.set(FOOTER_KEY_PROPERTY_NAME, master);
    c.setBoolean(PLAINTEXT_FOOTER_PROPERTY_NAME, true);
    c.set(ENCRYPTION_ALGORITHM_PROPERTY_NAME, "AES_GCM_V1");
    c.setInt(KeyToolkit.DATA_KEY_LENGTH_PROPERTY_NAME, 256);
    c.setInt(KeyToolkit.KEK_LENGTH_PROPERTY_NAME, 256);
    return super.getFileEncryptionProperties(c, file, context);
  }
}
