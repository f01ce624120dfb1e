package lakehouse.spark;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.types.DataTypes;

/**
 * {@code card_token}: HMAC-SHA256 of a card number as lowercase hex, keyed by the PII key.
 *
 * <p>The function holds where the key is (its file in the secrets directory), never the key: the
 * plan, its string form in logs and the UI, and a serialized task carry the path only. The key is
 * read where the function runs, once per instance; {@code LAKEHOUSE_PII_HMAC_KEY} in the
 * environment overrides the file (a secret manager's injection, as in the settings).
 */
public final class CardToken implements UDF1<String, String> {
  private static final long serialVersionUID = 1L;
  private final String keyFile;
  private transient Mac mac;

  CardToken(String keyFile) {
    this.keyFile = keyFile;
  }

  /** Registers the function under NAME for this session. */
  public static void register(SparkSession spark, String name, String keyFile) {
    spark.udf().register(name, new CardToken(keyFile), DataTypes.StringType);
  }

  static byte[] strip(byte[] b) {
    int from = 0, to = b.length;
    while (from < to && Character.isWhitespace(b[from])) from++;
    while (to > from && Character.isWhitespace(b[to - 1])) to--;
    return Arrays.copyOfRange(b, from, to);
  }

  private Mac mac() throws Exception {
    if (mac == null) {
      String injected = System.getenv("LAKEHOUSE_PII_HMAC_KEY");
      byte[] key = injected != null && !injected.isEmpty()
          ? injected.getBytes(StandardCharsets.UTF_8)
          : strip(Files.readAllBytes(Path.of(keyFile)));
      if (key.length == 0) throw new IllegalStateException("the PII key in " + keyFile + " is empty");
      Mac m = Mac.getInstance("HmacSHA256");
      m.init(new SecretKeySpec(key, "HmacSHA256"));
      mac = m;
    }
    return mac;
  }

  @Override
  public String call(String cardNumber) throws Exception {
    if (cardNumber == null) return null;
    byte[] h = mac().doFinal(cardNumber.getBytes(StandardCharsets.UTF_8));
    StringBuilder sb = new StringBuilder(64);
    for (byte b : h) sb.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
    return sb.toString();
  }
}
