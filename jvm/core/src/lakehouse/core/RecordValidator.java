package lakehouse.core;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The silver validator, engine-neutral: one JSON record in, {@code [_error, <typed fields>..., _extra]}
 * out. Spark runs it as a SQL function ({@code lakehouse.spark.Validator}) and the fraud fast path
 * (Flink) calls it directly, so both judge a record by the same code.
 *
 * <p>It runs a program compiled in Python from the contract's JSON Schema ({@code
 * lakehouse.validation.program}): per property its JSON types, the Spark type silver stores,
 * whether it is required, and its checks with their reason texts ready-made. So the rules and
 * the words stay in one place, and this class only parses and compares.
 *
 * <p>Why a JVM function and not Spark expressions: the same checks as expressions over VARIANT
 * made a plan of thousands of nodes whose generated code Spark builds again for every query and
 * micro-batch (most of a short run's warm-up), and extracting each field cost about 10 us per
 * record. Here a record is parsed once by Jackson (strict: duplicate keys, trailing content,
 * NaN and single quotes are not JSON) and every check reads the parsed tree.
 */
public final class RecordValidator implements Serializable {
  private static final long serialVersionUID = 1L;

  private static final ObjectMapper JSON = mapper();
  private static final DateTimeFormatter RFC3339 = DateTimeFormatter.ISO_OFFSET_DATE_TIME;

  private final Field[] fields;
  private final Set<String> known;
  private final Pattern dateTimeShape;
  private final long futureToleranceMicros;
  private final String futureWords;

  private static ObjectMapper mapper() {
    JsonFactory factory = JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();
    ObjectMapper m = new ObjectMapper(factory);
    m.enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);
    m.enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    m.configure(JsonNodeFeature.STRIP_TRAILING_BIGDECIMAL_ZEROES, false);
    return m;
  }

  /** One property and its checks, in the order the reasons are tried (the first failing one is given). */
  static final class Field implements Serializable {
    private static final long serialVersionUID = 1L;
    String name;
    String sparkType; // string | double | bigint | boolean | timestamp
    boolean required;
    List<String> jsonTypes = new ArrayList<>();
    String allowed; // "string or null"
    boolean checkFitsLong;
    boolean hasEnum;
    List<String> enumStrings = new ArrayList<>();
    List<Double> enumNumbers = new ArrayList<>();
    List<Boolean> enumBooleans = new ArrayList<>();
    String enumWords;
    int minLength = -1;
    int maxLength = -1;
    Pattern pattern;
    String patternWords;
    boolean withhold; // a value that may be a card number is never copied into a reason
    List<Bound> bounds = new ArrayList<>();
    boolean dateTime;
  }

  static final class Bound implements Serializable {
    private static final long serialVersionUID = 1L;
    String kind; // minimum | exclusiveMinimum | maximum | exclusiveMaximum
    double value;
    String words; // "is below the minimum 0"

    boolean broken(double v) {
      switch (kind) {
        case "minimum":
          return v < value;
        case "exclusiveMinimum":
          return v <= value;
        case "maximum":
          return v > value;
        default:
          return v >= value;
      }
    }
  }

  /** The validator for PROGRAM, the JSON written by {@code lakehouse.validation.program}. */
  public RecordValidator(String program) {
    JsonNode p;
    try {
      p = new ObjectMapper().readTree(program);
    } catch (Exception e) {
      throw new IllegalArgumentException("not a validator program: " + e.getMessage(), e);
    }
    dateTimeShape = Pattern.compile(p.get("date_time_re").asText());
    futureToleranceMicros = p.get("future_tolerance_us").asLong();
    futureWords = p.get("future_words").asText();
    List<Field> out = new ArrayList<>();
    known = new HashSet<>();
    for (JsonNode f : p.get("fields")) {
      Field x = new Field();
      x.name = f.get("name").asText();
      x.sparkType = f.get("spark_type").asText();
      x.required = f.get("required").asBoolean();
      for (JsonNode t : f.get("json_types")) x.jsonTypes.add(t.asText());
      x.allowed = String.join(" or ", x.jsonTypes);
      x.checkFitsLong = x.sparkType.equals("bigint");
      JsonNode e = f.get("enum");
      if (e != null && !e.isNull()) {
        x.hasEnum = true;
        for (JsonNode v : e.get("strings")) x.enumStrings.add(v.asText());
        for (JsonNode v : e.get("numbers")) x.enumNumbers.add(v.asDouble());
        for (JsonNode v : e.get("booleans")) x.enumBooleans.add(v.asBoolean());
        x.enumWords = e.get("words").asText();
      }
      if (f.hasNonNull("min_length")) x.minLength = f.get("min_length").asInt();
      if (f.hasNonNull("max_length")) x.maxLength = f.get("max_length").asInt();
      if (f.hasNonNull("pattern")) {
        x.pattern = Pattern.compile(f.get("pattern").asText());
        x.patternWords = f.get("pattern_words").asText();
      }
      x.withhold = f.path("withhold_value").asBoolean(false);
      for (JsonNode b : f.get("bounds")) {
        Bound y = new Bound();
        y.kind = b.get("kind").asText();
        y.value = b.get("value").asDouble();
        y.words = b.get("words").asText();
        x.bounds.add(y);
      }
      x.dateTime = f.get("date_time").asBoolean();
      out.add(x);
      known.add(x.name);
    }
    fields = out.toArray(new Field[0]);
  }

  /** The typed fields, in output order (after {@code _error}, before {@code _extra}). */
  public String[] fieldNames() {
    String[] out = new String[fields.length];
    for (int i = 0; i < fields.length; i++) out[i] = fields[i].name;
    return out;
  }

  /** Each typed field's type: string | double | bigint | boolean | timestamp. */
  public String[] fieldTypes() {
    String[] out = new String[fields.length];
    for (int i = 0; i < fields.length; i++) out[i] = fields[i].sparkType;
    return out;
  }

  /**
   * {@code [_error, <typed fields>..., _extra]} of VALUE: {@code _error} is null for a valid record,
   * else "field: reason; field: reason"; a timestamp field is an {@link Instant} (microseconds).
   * NOW_MICROS bounds event times in the future (null: no bound).
   */
  public Object[] check(String value, Long nowMicros) {
    return check(value, nowMicros, true);
  }

  /**
   * As {@link #check(String, Long, boolean)} for the record's BYTES as Kafka delivered them: bytes
   * that are not UTF-8 are invalid ("value: not UTF-8 text (byte 0xff at offset 17)"), where a
   * decoder that replaced them would let a mangled record through as valid.
   */
  public Object[] check(byte[] value, Long nowMicros, boolean extra) {
    if (value == null) return check((String) null, nowMicros, extra);
    String text;
    try {
      text = strictUtf8().decode(ByteBuffer.wrap(value)).toString();
    } catch (CharacterCodingException e) {
      Object[] out = new Object[fields.length + 2];
      out[0] = "value: not UTF-8 text (" + firstMalformed(value) + ")";
      return out;
    }
    return check(text, nowMicros, extra);
  }

  private static CharsetDecoder strictUtf8() {
    return StandardCharsets.UTF_8
        .newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
  }

  /** Where BYTES stop being UTF-8 (known not to be): "byte 0xff at offset 17". */
  static String firstMalformed(byte[] bytes) {
    ByteBuffer in = ByteBuffer.wrap(bytes);
    CoderResult r = strictUtf8().decode(in, CharBuffer.allocate(bytes.length + 1), true);
    int at = r.isError() ? in.position() : bytes.length - 1;
    return String.format("byte 0x%02x at offset %d", bytes[at] & 0xff, at);
  }

  /** As {@link #check(String, Long)}; without EXTRA, {@code _extra} is left null (the fast path has no use for it). */
  public Object[] check(String value, Long nowMicros, boolean extra) {
    Object[] out = new Object[fields.length + 2];
    if (value == null) {
      out[0] = "value: empty record";
      return out;
    }
    JsonNode doc;
    try {
      doc = JSON.readTree(value);
    } catch (StreamConstraintsException e) { // nesting deeper than 1000, a number of 1000+ digits, ...
      out[0] = "value: beyond the JSON parser's limits (" + e.getOriginalMessage().replaceAll(", from `[^`]*`", "") + ")";
      return out;
    } catch (Exception e) { // JsonProcessingException
      doc = null;
    }
    if (doc == null || doc.isMissingNode()) {
      out[0] = "value: not valid JSON";
      return out;
    }
    if (!doc.isObject()) {
      out[0] = "value: not a JSON object (got " + jsonType(doc) + ")";
      return out;
    }
    StringBuilder errors = null;
    for (int i = 0; i < fields.length; i++) {
      Field f = fields[i];
      JsonNode raw = doc.get(f.name);
      String reason = check(f, raw, nowMicros, out, i + 1);
      if (reason != null) {
        if (errors == null) errors = new StringBuilder(reason);
        else errors.append("; ").append(reason);
      }
    }
    out[0] = errors == null ? null : errors.toString();
    if (extra) out[fields.length + 1] = extra((ObjectNode) doc);
    return out;
  }

  /** Null when the field is valid, else "name: reason"; stores its typed value in OUT[AT]. */
  private String check(Field f, JsonNode raw, Long nowMicros, Object[] out, int at) {
    if (raw == null) return f.required ? f.name + ": required field missing" : null;
    boolean typeOk = false;
    for (String t : f.jsonTypes) typeOk |= typeOk(raw, t);
    if (!typeOk) return f.name + ": expected " + f.allowed + ", got " + jsonType(raw);
    if (raw.isNull()) return null;
    String text = text(raw);
    Double number = raw.isNumber() ? raw.doubleValue() : null;
    Instant ts = null;
    out[at] = typed(f, raw, number);
    if (f.checkFitsLong && !fitsLong(raw)) return f.name + ": " + text + " does not fit a 64-bit integer";
    if (f.hasEnum && !isMember(f, raw, text, number)) return f.name + ": '" + text + "' " + f.enumWords;
    if (f.minLength >= 0 || f.maxLength >= 0) {
      int n = text.codePointCount(0, text.length());
      if (f.minLength >= 0 && n < f.minLength)
        return f.name + ": shorter than " + f.minLength + " characters (" + n + ")";
      if (f.maxLength >= 0 && n > f.maxLength)
        return f.name + ": longer than " + f.maxLength + " characters (" + n + ")";
    }
    if (f.pattern != null && !f.pattern.matcher(text).find())
      return f.name + (f.withhold ? ": the value (withheld)" : ": '" + firstCodePoints(text, 80) + "'") + " " + f.patternWords;
    if (number != null) {
      for (Bound b : f.bounds) if (b.broken(number)) return f.name + ": " + text + " " + b.words;
    }
    if (f.dateTime) {
      ts = dateTime(text);
      out[at] = ts;
      if (ts == null) return f.name + ": '" + text + "' is not an ISO-8601 date-time with a zone";
      if (nowMicros != null && micros(ts) > nowMicros + futureToleranceMicros) return f.name + ": " + futureWords;
    }
    return null;
  }

  private static boolean typeOk(JsonNode raw, String jsonType) {
    switch (jsonType) {
      case "string":
        return raw.isTextual();
      case "boolean":
        return raw.isBoolean();
      case "null":
        return raw.isNull();
      case "number":
        return raw.isNumber();
      case "integer": // JSON Schema: 12.0 is an integer too
        return raw.isIntegralNumber() || (raw.isNumber() && raw.doubleValue() % 1.0 == 0);
      case "object":
        return raw.isObject();
      case "array":
        return raw.isArray();
      default:
        throw new IllegalArgumentException("unsupported JSON type " + jsonType);
    }
  }

  static String jsonType(JsonNode n) {
    if (n.isTextual()) return "string";
    if (n.isNumber()) return "number";
    if (n.isBoolean()) return "boolean";
    if (n.isNull()) return "null";
    if (n.isObject()) return "object";
    if (n.isArray()) return "array";
    return n.getNodeType().name().toLowerCase(Locale.ROOT);
  }

  /** The token as text: a string's value, a number as written (trailing zeros kept), JSON otherwise. */
  private static String text(JsonNode n) {
    if (n.isTextual()) return n.textValue();
    if (n.isBigDecimal()) return n.decimalValue().toString();
    if (n.isNumber() || n.isBoolean()) return n.asText();
    return n.toString();
  }

  private static boolean fitsLong(JsonNode n) {
    if (n.isIntegralNumber()) return n.canConvertToLong();
    double d = n.doubleValue(); // 12.0 and 1e2 are integers too
    return d >= -0x1p63 && d < 0x1p63;
  }

  private static Object typed(Field f, JsonNode n, Double number) {
    switch (f.sparkType) {
      case "string":
        return n.isTextual() ? n.textValue() : null;
      case "double":
        return number;
      case "bigint":
        return n.isNumber() && fitsLong(n) ? n.longValue() : null;
      case "boolean":
        return n.isBoolean() ? n.booleanValue() : null;
      default:
        return null; // timestamp: set after parsing
    }
  }

  private static boolean isMember(Field f, JsonNode n, String text, Double number) {
    if (n.isTextual() && f.enumStrings.contains(text)) return true;
    if (number != null && f.enumNumbers.contains(number)) return true; // by value: 1, 1.0 and 1e0
    return n.isBoolean() && f.enumBooleans.contains(n.booleanValue());
  }

  private static String firstCodePoints(String s, int n) {
    if (s.codePointCount(0, s.length()) <= n) return s;
    return s.substring(0, s.offsetByCodePoints(0, n));
  }

  /** RFC 3339 with a zone, read strictly (no 24:00, no Feb 29 in a common year, offsets up to 18 h). */
  private Instant dateTime(String text) {
    if (!dateTimeShape.matcher(text).find()) return null;
    Instant quick = plainDateTime(text);
    if (quick != null) return quick.minusNanos(quick.getNano() % 1000);
    try {
      Instant t = OffsetDateTime.parse(text.toUpperCase(Locale.ROOT), RFC3339).toInstant();
      return t.minusNanos(t.getNano() % 1000); // Spark keeps microseconds: truncated, not rounded
    } catch (DateTimeParseException e) {
      return null;
    }
  }

  /**
   * The common case of {@link #dateTime} without java.time's formatter (a quarter of the fast path's
   * parsing thread went there): TEXT already has the shape, and every field is in its everyday range
   * (seconds below 60, offsets within 18 h). Null for anything else, which the formatter then decides,
   * so the answer never differs from it.
   */
  private static Instant plainDateTime(String s) {
    int year = digits(s, 0, 4), month = digits(s, 5, 2), day = digits(s, 8, 2);
    int hour = digits(s, 11, 2), minute = digits(s, 14, 2), second = digits(s, 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
    if (day > java.time.YearMonth.of(year, month).lengthOfMonth()) return null;
    int i = 19, nanos = 0;
    if (s.charAt(i) == '.') {
      int start = ++i;
      while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') i++;
      nanos = digits(s, start, i - start);
      for (int k = i - start; k < 9; k++) nanos *= 10;
    }
    int offsetS = 0;
    char z = s.charAt(i);
    if (z != 'Z' && z != 'z') {
      int oh = digits(s, i + 1, 2), om = digits(s, i + 4, 2);
      if (oh > 18 || om > 59 || (oh == 18 && om > 0)) return null;
      offsetS = (z == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    }
    long days = java.time.LocalDate.of(year, month, day).toEpochDay();
    return Instant.ofEpochSecond(days * 86_400L + hour * 3600L + minute * 60L + second - offsetS, nanos);
  }

  /** The decimal number in S's N characters from FROM (all digits: the shape was checked). */
  private static int digits(String s, int from, int n) {
    int v = 0;
    for (int k = from; k < from + n; k++) v = v * 10 + (s.charAt(k) - '0');
    return v;
  }

  private static long micros(Instant t) {
    return Math.addExact(Math.multiplyExact(t.getEpochSecond(), 1_000_000L), t.getNano() / 1000);
  }

  /** Unknown top-level fields as a JSON object, or null when there are none. */
  private String extra(ObjectNode doc) {
    ObjectNode rest = null;
    for (Map.Entry<String, JsonNode> e : doc.properties()) {
      if (known.contains(e.getKey())) continue;
      if (rest == null) rest = JSON.createObjectNode();
      rest.set(e.getKey(), e.getValue());
    }
    return rest == null ? null : rest.toString();
  }
}
