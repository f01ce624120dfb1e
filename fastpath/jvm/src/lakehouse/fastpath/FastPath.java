package lakehouse.fastpath;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.HashMap;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import lakehouse.core.CardJudge;
import lakehouse.core.FraudRules.Pay;
import lakehouse.core.PayState;
import lakehouse.core.RecordValidator;
import lakehouse.core.UserJudge;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamUtils;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.TimerService;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The fraud fast path: Kafka {@code payments} -> validate -> card rules (keyed by card_token) ->
 * user rules (keyed by user_id) -> Redis, in one Flink job (contracts §3; docs/architecture.md).
 *
 * <p>The rules are {@code lakehouse.core}'s, the same code gold's Spark operators run, so a
 * payment judged with the same held history gets the same verdict on both paths. State per card and
 * per user is the judges' {@link PayState} bytes, checkpointed by Flink; the watermark is the
 * newest event time minus the contract's 10 minutes, as gold's. Invalid records are counted and
 * skipped (silver quarantines them). Alerts go to Redis through {@link RedisAlertSink}, with the
 * serving writer's own Lua scripts: a replay after a restart rewrites the same digests, so nothing
 * is appended twice, and gold's later write of an equal verdict is a no-op.
 *
 * <p>Argument: the path of the job's JSON configuration ({@code lakehouse/services/fastpath.py}
 * writes it). It names the files of the secrets it needs (the card_token key, the Redis writer's
 * password, the CA), never their values; {@code LAKEHOUSE_PII_HMAC_KEY} in the environment
 * overrides the key's file (a secret manager's injection).
 */
public final class FastPath {
  private FastPath() {}

  static final Logger LOG = LoggerFactory.getLogger(FastPath.class);

  /** A payment (or a card-verdict update of a held one) between the operators, and an alert to the sink. */
  public static final class Msg {
    public String id;
    public long t; // event time, µs since the epoch
    public double amount;
    public String country;
    public String user;
    public String card; // card_token
    public String merchant;
    public int cardBits; // after the card stage
    public boolean upd; // a card-verdict update of a held payment (card stage output only)
    public int verdict; // after the user stage: all rules that fired (0 = none)
    public boolean retract; // the payment was flagged and no longer is
    public long kafkaMs; // Kafka's record timestamp (latency metrics)

    public Msg() {}

    Pay pay() {
      Pay p = new Pay();
      p.id = id;
      p.t = t;
      p.amount = amount;
      p.country = country;
      p.user = user;
      p.card = card;
      p.merchant = merchant;
      return p;
    }

    static Msg of(Pay p, long kafkaMs) {
      Msg m = new Msg();
      m.id = p.id;
      m.t = p.t;
      m.amount = p.amount;
      m.country = p.country;
      m.user = p.user;
      m.card = p.card;
      m.merchant = p.merchant;
      m.kafkaMs = kafkaMs;
      return m;
    }
  }

  /** A Kafka record's value (its bytes: the validator decodes them strictly) and timestamp. */
  public static final class Raw {
    public byte[] value;
    public long kafkaMs;

    public Raw() {}
  }

  /** Microsecond cut below which a key's payments are no longer held; everything before the first watermark. */
  static long cut(long watermarkMs, long lateHorizonMs) {
    if (watermarkMs < 0) return Long.MIN_VALUE;
    return CardJudge.cutMicros(watermarkMs, lateHorizonMs);
  }

  /** Validates each record with the schema's validator and hashes card_number: a payment, or a count. */
  static final class Parse extends ProcessFunction<Raw, Msg> {
    private static final long serialVersionUID = 1L;
    private final String program;
    private final String piiKeyFile;
    private transient RecordValidator validator;
    private transient Mac mac;
    private transient int iId, iTime, iUser, iCard, iMerchant, iAmount, iCountry;
    private transient Counter valid, invalid;
    private transient long lastLog;

    Parse(String program, String piiKeyFile) {
      this.program = program;
      this.piiKeyFile = piiKeyFile;
    }

    @Override
    public void open(OpenContext ctx) throws Exception {
      validator = new RecordValidator(program);
      List<String> names = List.of(validator.fieldNames());
      iId = names.indexOf("event_id") + 1;
      iTime = names.indexOf("event_time") + 1;
      iUser = names.indexOf("user_id") + 1;
      iCard = names.indexOf("card_number") + 1;
      iMerchant = names.indexOf("merchant_id") + 1;
      iAmount = names.indexOf("amount") + 1;
      iCountry = names.indexOf("country") + 1;
      String key = Secure.secret("LAKEHOUSE_PII_HMAC_KEY", piiKeyFile);
      mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
      valid = getRuntimeContext().getMetricGroup().counter("payments_valid");
      invalid = getRuntimeContext().getMetricGroup().counter("payments_invalid");
    }

    String token(String cardNumber) {
      byte[] h = mac.doFinal(cardNumber.getBytes(StandardCharsets.UTF_8));
      StringBuilder sb = new StringBuilder(64);
      for (byte b : h) sb.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
      return sb.toString();
    }

    @Override
    public void processElement(Raw r, Context ctx, Collector<Msg> out) {
      long nowUs = System.currentTimeMillis() * 1000L;
      Object[] v;
      try {
        v = validator.check(r.value, nowUs, false); // unknown fields are silver's to keep
      } catch (RuntimeException e) { // never stop the job on a record
        v = new Object[] {"value: " + e};
      }
      if (v[0] != null) {
        invalid.inc();
        if (System.currentTimeMillis() - lastLog > 10_000) { // one line per 10 s at most: a flood stays readable
          lastLog = System.currentTimeMillis();
          LOG.warn("skipped an invalid payment ({} so far; silver quarantines them): {}", invalid.getCount(), v[0]);
        }
        return;
      }
      Pay p = new Pay();
      p.id = (String) v[iId];
      Instant t = (Instant) v[iTime];
      p.t = Math.multiplyExact(t.getEpochSecond(), 1_000_000L) + t.getNano() / 1000;
      p.user = (String) v[iUser];
      p.card = token((String) v[iCard]);
      p.merchant = (String) v[iMerchant];
      p.amount = ((Number) v[iAmount]).doubleValue();
      p.country = (String) v[iCountry];
      valid.inc();
      out.collect(Msg.of(p, r.kafkaMs));
    }
  }

  /**
   * Keyed state of one key's held payments (bytes). A key with state has exactly one pending
   * event-time timer, registered when its state is created; when it fires, the key is trimmed or
   * forgotten and, if anything is still held, a timer at the new expiry replaces it. So a payment
   * costs one state read and one write per stage, not a timer delete and register as well.
   */
  abstract static class Keyed extends KeyedProcessFunction<String, Msg, Msg> {
    private static final long serialVersionUID = 1L;
    final long lateHorizonMs;
    transient ValueState<byte[]> state;

    Keyed(long lateHorizonMs) {
      this.lateHorizonMs = lateHorizonMs;
    }

    @Override
    public void open(OpenContext ctx) {
      state = getRuntimeContext().getState(new ValueStateDescriptor<>("pays", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
    }

    /** When the key's state may be trimmed or forgotten (event time, ms). */
    abstract long expiryMs(PayState st);

    /** Stores ST; HAD says whether the key had state (and so a pending timer) before. */
    void save(PayState st, boolean had, TimerService timers) throws Exception {
      if (st.pays.isEmpty()) {
        state.clear(); // its pending timer, if any, will find nothing
        return;
      }
      state.update(st.encode());
      if (!had) timers.registerEventTimeTimer(expiryMs(st));
    }

    /** At the timer: what is still held after trimming, and a timer at its expiry if anything is. */
    void expire(PayState kept, long ts, TimerService timers) throws Exception {
      if (kept.pays.isEmpty()) {
        state.clear();
        return;
      }
      state.update(kept.encode());
      timers.registerEventTimeTimer(Math.max(expiryMs(kept), ts + 1));
    }
  }

  /** card_testing and impossible_travel, keyed by card_token (CardJudge). */
  static final class CardStage extends Keyed {
    private static final long serialVersionUID = 1L;

    CardStage(long lateHorizonMs) {
      super(lateHorizonMs);
    }

    @Override
    public void processElement(Msg m, Context ctx, Collector<Msg> out) throws Exception {
      long wm = ctx.timerService().currentWatermark();
      Pay p = m.pay();
      byte[] raw = state.value();
      CardJudge.Outcome o = CardJudge.judge(PayState.decode(raw), List.of(p), cut(wm, lateHorizonMs));
      if (o.judged.isEmpty()) return; // a copy of a payment already judged
      for (Pay c : o.changed) {
        Msg u = Msg.of(c, m.kafkaMs);
        u.cardBits = c.bits;
        u.upd = true;
        out.collect(u);
      }
      m.cardBits = p.bits;
      out.collect(m);
      save(o.next, raw != null, ctx.timerService());
    }

    @Override
    long expiryMs(PayState st) {
      return CardJudge.expiryMs(st, lateHorizonMs);
    }

    @Override
    public void onTimer(long ts, OnTimerContext ctx, Collector<Msg> out) throws Exception {
      byte[] raw = state.value();
      if (raw == null) return;
      PayState st = PayState.decode(raw);
      if (expiryMs(st) > ts) { // newer payments came since the timer was set: not due yet
        ctx.timerService().registerEventTimeTimer(expiryMs(st));
        return;
      }
      expire(CardJudge.retain(st, cut(ctx.timerService().currentWatermark(), lateHorizonMs)), ts, ctx.timerService());
    }
  }

  /** velocity and amount_spike, keyed by user_id (UserJudge), and the final verdict: alerts and retractions. */
  static final class UserStage extends Keyed {
    private static final long serialVersionUID = 1L;
    private final long retentionMs;
    private transient Counter alerts, retractions, changes;

    UserStage(long lateHorizonMs, long retentionMs) {
      super(lateHorizonMs);
      this.retentionMs = retentionMs;
    }

    @Override
    public void open(OpenContext ctx) {
      super.open(ctx);
      alerts = getRuntimeContext().getMetricGroup().counter("alerts");
      retractions = getRuntimeContext().getMetricGroup().counter("retractions");
      changes = getRuntimeContext().getMetricGroup().counter("verdict_changes");
    }

    @Override
    public void processElement(Msg m, Context ctx, Collector<Msg> out) throws Exception {
      long wm = ctx.timerService().currentWatermark();
      UserJudge.Arrival a = new UserJudge.Arrival(m.id, m.cardBits, m.upd ? null : m.pay());
      byte[] raw = state.value();
      UserJudge.Outcome o =
          UserJudge.judge(PayState.decode(raw), List.of(a), Math.max(wm, 0L), cut(wm, lateHorizonMs));
      if (o.next == null) return;
      for (UserJudge.Change ch : o.changed) {
        Msg c = Msg.of(ch.pay, m.kafkaMs);
        c.verdict = ch.verdict;
        if (ch.verdict != 0) {
          changes.inc();
          out.collect(c);
        } else if (ch.wasFlagged) {
          c.retract = true;
          retractions.inc();
          out.collect(c);
        }
      }
      for (Pay p : o.judged) {
        int verdict = p.bits | p.otherBits;
        if (verdict == 0) continue;
        Msg alert = Msg.of(p, m.kafkaMs);
        alert.verdict = verdict;
        alerts.inc();
        out.collect(alert);
      }
      save(o.next, raw != null, ctx.timerService());
    }

    @Override
    long expiryMs(PayState st) {
      return UserJudge.expiryMs(st, retentionMs);
    }

    @Override
    public void onTimer(long ts, OnTimerContext ctx, Collector<Msg> out) throws Exception {
      byte[] raw = state.value();
      if (raw == null) return;
      PayState st = PayState.decode(raw);
      if (expiryMs(st) > ts) { // paid since: idle for less than the retention period
        ctx.timerService().registerEventTimeTimer(expiryMs(st));
        return;
      }
      state.clear(); // no payment for the whole retention period: the user's history is forgotten
    }
  }

  /** (value, Kafka timestamp) of each record; a record without a value still counts (as invalid). */
  static final class RawSchema implements KafkaRecordDeserializationSchema<Raw> {
    private static final long serialVersionUID = 1L;

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Raw> out) {
      Raw r = new Raw();
      r.value = record.value();
      r.kafkaMs = record.timestamp();
      out.collect(r);
    }

    @Override
    public TypeInformation<Raw> getProducedType() {
      return TypeInformation.of(Raw.class);
    }
  }

  /**
   * Gold's watermark: the newest event time minus the delay, where an event time more than SKEW
   * ahead of the wall clock does not count (one wrong clock cannot make every other payment late).
   */
  static final class SkewCapped implements WatermarkGenerator<Msg> {
    private final long delayMs;
    private final long skewMs;
    private long newest = Long.MIN_VALUE;

    SkewCapped(long delayMs, long skewMs) {
      this.delayMs = delayMs;
      this.skewMs = skewMs;
    }

    @Override
    public void onEvent(Msg m, long ts, WatermarkOutput out) {
      if (ts <= System.currentTimeMillis() + skewMs) newest = Math.max(newest, ts);
    }

    @Override
    public void onPeriodicEmit(WatermarkOutput out) {
      if (newest != Long.MIN_VALUE) out.emitWatermark(new Watermark(newest - delayMs));
    }
  }

  static OffsetsInitializer startingOffsets(String start, String topic) throws java.io.IOException {
    if (start.equals("earliest")) return OffsetsInitializer.earliest();
    if (start.equals("latest")) return OffsetsInitializer.latest();
    if (start.startsWith("{")) { // {"payments": {"0": 42, ...}}, as LAKEHOUSE_KAFKA_STARTING_OFFSETS
      Map<TopicPartition, Long> offsets = new HashMap<>();
      for (Map.Entry<String, JsonNode> e : new ObjectMapper().readTree(start).get(topic).properties())
        offsets.put(new TopicPartition(topic, Integer.parseInt(e.getKey())), e.getValue().asLong());
      return OffsetsInitializer.offsets(offsets);
    }
    throw new IllegalArgumentException("start: expected earliest, latest or offsets JSON, got " + start);
  }

  /**
   * STREAM keyed by KEY. With one parallel instance every key group lives in the same subtask, so the
   * stream is already partitioned as keyBy would partition it: reinterpreting it instead of shuffling
   * chains source, both rule stages and the sink into one task, with no serialization or network
   * buffer between them (two such hops were most of a payment's cost beside the rules). With more
   * instances, a real keyBy.
   */
  static KeyedStream<Msg, String> keyed(DataStream<Msg> stream, KeySelector<Msg, String> key, int parallelism) {
    if (parallelism == 1) return DataStreamUtils.reinterpretAsKeyedStream(stream, key, Types.STRING);
    return stream.keyBy(key, Types.STRING);
  }

  public static void main(String[] argv) throws Exception {
    if (argv.length != 1) throw new IllegalArgumentException("usage: FastPath <job.json>");
    JsonNode job = new ObjectMapper().readTree(new File(argv[0]));
    Configuration conf = new Configuration();
    for (Map.Entry<String, JsonNode> e : job.get("flink").properties()) conf.setString(e.getKey(), e.getValue().asText());
    if (job.has("flink_secret_files")) // secrets (the SSL stores' password) from their files, not from job.json
      for (Map.Entry<String, JsonNode> e : job.get("flink_secret_files").properties())
        conf.setString(e.getKey(), java.nio.file.Files.readString(java.nio.file.Path.of(e.getValue().asText())).strip());
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setParallelism(job.get("parallelism").asInt());

    var builder = KafkaSource.<Raw>builder();
    for (Map.Entry<String, JsonNode> e : job.get("kafka").properties()) // SASL_SSL: its password stays in its file
      builder.setProperty(e.getKey(), e.getValue().asText());
    KafkaSource<Raw> source =
        builder
            .setBootstrapServers(job.get("bootstrap").asText())
            .setTopics(job.get("topic").asText())
            .setGroupId(job.get("group").asText())
            .setStartingOffsets(startingOffsets(job.get("start").asText(), job.get("topic").asText()))
            .setDeserializer(new RawSchema())
            .setProperty("commit.offsets.on.checkpoint", "true")
            // Fuller fetches: the broker answers when 16 KiB are there or after fetch_wait_ms, not for every
            // few payments (the consumer's fetch loop had 41 % as many CPU samples as the task thread).
            .setProperty("fetch.min.bytes", "16384")
            .setProperty("fetch.max.wait.ms", job.get("fetch_wait_ms").asText())
            .setProperty("register.consumer.metrics", "false") // ~200 Kafka client gauges; lag comes from pendingRecords
            .setProperty("client.id.prefix", job.get("group").asText())
            .build();
    long lateHorizonMs = job.get("late_horizon_ms").asLong();
    long retentionMs = job.get("retention_ms").asLong();
    long watermarkDelayMs = job.get("watermark_delay_ms").asLong();
    long skewMs = job.get("max_clock_skew_ms").asLong();
    WatermarkStrategy<Msg> watermarks =
        WatermarkStrategy.<Msg>forGenerator(ctx -> new SkewCapped(watermarkDelayMs, skewMs))
            .withTimestampAssigner((m, ts) -> Math.floorDiv(m.t, 1000L))
            .withIdleness(Duration.ofSeconds(30));

    int parallelism = job.get("parallelism").asInt();
    DataStream<Msg> payments =
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka: " + job.get("topic").asText())
            .uid("source")
            .process(new Parse(job.get("validator").asText(), job.get("pii_key_file").asText()))
            .uid("parse")
            .name("validate")
            .assignTimestampsAndWatermarks(watermarks)
            .uid("watermarks");
    DataStream<Msg> cardJudged =
        keyed(payments, m -> m.card, parallelism).process(new CardStage(lateHorizonMs)).uid("card").name("card rules");
    keyed(cardJudged, m -> m.user, parallelism)
        .process(new UserStage(lateHorizonMs, retentionMs))
        .uid("user")
        .name("user rules")
        .sinkTo(new RedisAlertSink(job.get("redis")))
        .uid("redis")
        .name("redis");
    LOG.info("fast path: {} -> Redis, group {}, start {}", job.get("topic").asText(), job.get("group").asText(),
        job.get("start").asText());
    env.execute(job.get("name").asText());
  }
}
