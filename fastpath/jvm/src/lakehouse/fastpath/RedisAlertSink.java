package lakehouse.fastpath;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import lakehouse.core.Encoding;
import lakehouse.core.FraudRules;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.exceptions.JedisNoScriptException;

/**
 * Alerts and retractions to Redis with the serving writer's own Lua scripts
 * ({@code lakehouse.serving.writer}: the job's configuration carries their text, so there is one
 * definition), plus the fast path's own verdict in {@code fraud:fast:{event_id}}.
 *
 * <p>The stream entry holds the gold columns, {@code detected_at} (now) and {@code path = fast};
 * the script's digest covers the content only ({@code ALERT_DIGEST_COLUMNS}), so a replay after a
 * restart, or gold's later write of the same verdict, changes nothing. Each alert is written when
 * it arrives (one round trip on loopback): latency before throughput, since alerts are a small
 * share of payments. A Redis error fails the job; Flink restarts it from the last checkpoint and
 * the replay rewrites what may have been lost, idempotently.
 */
final class RedisAlertSink implements Sink<FastPath.Msg> {
  private static final long serialVersionUID = 1L;
  private final String conf; // the "redis" object of job.json, as text (JsonNode is not serializable)

  RedisAlertSink(JsonNode redis) {
    this.conf = redis.toString();
  }

  @Override
  public SinkWriter<FastPath.Msg> createWriter(WriterInitContext context) throws java.io.IOException {
    JsonNode c = new com.fasterxml.jackson.databind.ObjectMapper().readTree(conf);
    Histogram latency =
        context.metricGroup().histogram("alert_latency_ms", new DescriptiveStatisticsHistogram(1000));
    org.apache.flink.metrics.Counter written = context.metricGroup().counter("alerts_written");
    return new Writer(c, latency, written);
  }

  static final class Writer implements SinkWriter<FastPath.Msg> {
    private final JsonNode c;
    private final Jedis jedis;
    private final String upsertLua;
    private final String retractLua;
    private String upsertSha;
    private String retractSha;
    private final Histogram latency;
    private final org.apache.flink.metrics.Counter written;

    Writer(JsonNode c, Histogram latency, org.apache.flink.metrics.Counter written) {
      this.c = c;
      this.latency = latency;
      this.written = written;
      try {
        jedis = Secure.redis(c, 5000);
      } catch (java.io.IOException | java.security.GeneralSecurityException e) {
        throw new IllegalStateException("cannot set up the Redis connection: " + e, e);
      }
      upsertLua = c.get("upsert_lua").asText();
      retractLua = c.get("retract_lua").asText();
      upsertSha = jedis.scriptLoad(upsertLua);
      retractSha = jedis.scriptLoad(retractLua);
    }

    private String key(String prefix, String id) {
      return c.get(prefix).asText() + id;
    }

    private Object eval(boolean upsert, List<String> keys, List<String> args) {
      try {
        return jedis.evalsha(upsert ? upsertSha : retractSha, keys, args);
      } catch (JedisNoScriptException e) { // Redis restarted (or SCRIPT FLUSH): load again
        if (upsert) upsertSha = jedis.scriptLoad(upsertLua);
        else retractSha = jedis.scriptLoad(retractLua);
        return jedis.evalsha(upsert ? upsertSha : retractSha, keys, args);
      }
    }

    @Override
    public void write(FastPath.Msg m, Context ctx) {
      List<String> keys =
          List.of(
              c.get("stream").asText(),
              key("marker_prefix", m.id),
              key("user_prefix", m.user),
              key("user_alerts_prefix", m.user));
      String fast = key("fast_prefix", m.id);
      if (m.retract) {
        eval(false, keys, List.of(m.id, c.get("user_ttl_s").asText(), m.user));
        jedis.del(fast);
        return;
      }
      String score = Encoding.pyRepr(FraudRules.score(m.verdict));
      String rules = Encoding.stringArray(FraudRules.names(m.verdict));
      String detected = Encoding.timestamp(System.currentTimeMillis() * 1000L);
      // The gold columns in FRAUD_ALERT_COLUMNS order; the digest covers them up to score.
      List<String> content =
          List.of(
              "event_id", m.id,
              "event_time", Encoding.timestamp(m.t),
              "user_id", m.user,
              "card_token", m.card,
              "merchant_id", m.merchant,
              "amount", Encoding.pyRepr(m.amount),
              "rules", rules,
              "score", score);
      List<String> args = new ArrayList<>(40);
      args.add(m.id);
      args.add(Encoding.digest(content));
      args.add(c.get("maxlen").asText());
      args.add(c.get("marker_ttl_s").asText());
      args.add(c.get("user_ttl_s").asText());
      args.add(m.user);
      args.add(Long.toString(m.t));
      args.add(score);
      args.addAll(content);
      args.add("detected_at");
      args.add(detected);
      args.add(c.get("path_field").asText());
      args.add(c.get("path").asText());
      eval(true, keys, args);
      jedis.hset(
          fast,
          java.util.Map.of(
              "event_time", Encoding.timestamp(m.t), "rules", rules, "score", score, "detected_at", detected));
      jedis.expire(fast, c.get("fast_ttl_s").asLong());
      written.inc();
      if (m.kafkaMs > 0) latency.update(System.currentTimeMillis() - m.kafkaMs);
    }

    @Override
    public void flush(boolean endOfInput) {}

    @Override
    public void close() {
      jedis.close();
    }
  }
}
