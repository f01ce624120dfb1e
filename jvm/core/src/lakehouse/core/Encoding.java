package lakehouse.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.List;

/**
 * Redis values exactly as {@code lakehouse.serving.keys} encodes them, so an alert written by the
 * fast path (Java) and by the serving stream (Python) is the same bytes: doubles as Python's
 * {@code repr} (shortest round trip), timestamps as fixed-width ISO-8601 UTC with microseconds,
 * string arrays as compact JSON, and the alert digest over the same fields.
 */
public final class Encoding {
  private Encoding() {}

  private static final DateTimeFormatter TS =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").withZone(ZoneOffset.UTC);

  /** Python's {@code repr(float)}: the shortest digits that round-trip, fixed or exponent notation. */
  public static String pyRepr(double d) {
    if (Double.isNaN(d)) return "nan";
    if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
    if (d == 0.0) return (1.0 / d < 0) ? "-0.0" : "0.0";
    BigDecimal exact = new BigDecimal(Math.abs(d));
    BigDecimal shortest = null;
    for (int p = 1; p <= 17; p++) {
      BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
      if (r.doubleValue() == Math.abs(d)) {
        shortest = r;
        break;
      }
    }
    if (shortest == null) shortest = exact.round(new MathContext(17, RoundingMode.HALF_EVEN));
    shortest = shortest.stripTrailingZeros();
    String digits = shortest.unscaledValue().toString();
    int decpt = digits.length() - shortest.scale(); // digits d1 d2 ... with the point after decpt of them
    StringBuilder out = new StringBuilder(d < 0 ? "-" : "");
    if (decpt <= -4 || decpt > 16) {
      out.append(digits.charAt(0));
      if (digits.length() > 1) out.append('.').append(digits, 1, digits.length());
      int exp = decpt - 1;
      out.append('e').append(exp < 0 ? '-' : '+');
      int a = Math.abs(exp);
      if (a < 10) out.append('0');
      out.append(a);
    } else if (decpt <= 0) {
      out.append("0.");
      for (int i = 0; i < -decpt; i++) out.append('0');
      out.append(digits);
    } else if (decpt >= digits.length()) {
      out.append(digits);
      for (int i = digits.length(); i < decpt; i++) out.append('0');
      out.append(".0");
    } else {
      out.append(digits, 0, decpt).append('.').append(digits, decpt, digits.length());
    }
    return out.toString();
  }

  /** {@code encode_ts}: fixed-width ISO-8601 UTC, microseconds always present. */
  public static String timestamp(long micros) {
    Instant t = Instant.ofEpochSecond(Math.floorDiv(micros, 1_000_000L), Math.floorMod(micros, 1_000_000L) * 1000L);
    return TS.format(t);
  }

  /** A list of strings as compact JSON ({@code ["a","b"]}); the names here never need escaping. */
  public static String stringArray(List<String> values) {
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < values.size(); i++) {
      if (i > 0) sb.append(',');
      sb.append('"').append(values.get(i).replace("\\", "\\\\").replace("\"", "\\\"")).append('"');
    }
    return sb.append(']').toString();
  }

  /** The alert digest: SHA-256 over the field/value pairs joined by U+001F, first 32 hex digits. */
  public static String digest(List<String> pairs) {
    try {
      byte[] h =
          MessageDigest.getInstance("SHA-256").digest(String.join("\u001f", pairs).getBytes(StandardCharsets.UTF_8));
      StringBuilder sb = new StringBuilder(64);
      for (byte b : h) sb.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
      return sb.substring(0, 32);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
