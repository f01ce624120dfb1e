package lakehouse.fastpath;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;
import redis.clients.jedis.Jedis;

/**
 * The engine study's Flink candidate (docs/benchmarks.md, "Fast path: choosing the engine"):
 * Kafka -> parse -> keyBy(user_id) -> Redis, with no rules. Every record whose JSON has a
 * {@code probe} field is written to Redis as one XADD of its probe id, so the benchmark measures
 * what the engine itself adds between Kafka and Redis: the source, one keyed exchange (the fast
 * path has two), the sink.
 *
 * <p>Arguments: {@code key=value} pairs (bootstrap, topic, group, redis_host, redis_port, redis_user,
 * redis_password_file, redis_ca_file, out, buffer_timeout_ms, parallelism, and {@code kafka.<property>}
 * for the Kafka client); passwords are read from their files, never from the command line.
 */
public final class PassThrough {
  private PassThrough() {}

  /** (user_id, probe id or null) of one payment. */
  public static final class Rec {
    public String user;
    public String probe;

    public Rec() {}

    Rec(String user, String probe) {
      this.user = user;
      this.probe = probe;
    }
  }

  static Map<String, String> parse(String[] args) {
    Map<String, String> out = new HashMap<>();
    for (String a : args) {
      int eq = a.indexOf('=');
      if (eq <= 0) throw new IllegalArgumentException("expected key=value, got " + a);
      out.put(a.substring(0, eq), a.substring(eq + 1));
    }
    return out;
  }

  /** One XADD per probe, on the writer's own connection. */
  static final class RedisProbeSink implements Sink<Rec> {
    private static final long serialVersionUID = 1L;
    final Map<String, String> a;

    RedisProbeSink(Map<String, String> a) {
      this.a = new HashMap<>(a);
    }

    @Override
    public SinkWriter<Rec> createWriter(WriterInitContext context) throws IOException {
      Jedis jedis;
      try {
        jedis = Secure.redis(a.get("redis_host"), Integer.parseInt(a.get("redis_port")), a.get("redis_user"),
            a.get("redis_password_file"), a.get("redis_ca_file"), 5000);
      } catch (java.security.GeneralSecurityException e) {
        throw new IOException("cannot set up the Redis connection: " + e, e);
      }
      String stream = a.get("out");
      return new SinkWriter<>() {
        @Override
        public void write(Rec r, Context ctx) {
          Map<String, String> fields = new HashMap<>();
          fields.put("probe", r.probe);
          jedis.xadd(stream, redis.clients.jedis.StreamEntryID.NEW_ENTRY, fields);
        }

        @Override
        public void flush(boolean endOfInput) {}

        @Override
        public void close() {
          jedis.close();
        }
      };
    }
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = parse(argv);
    Configuration conf = new Configuration();
    conf.setString("execution.buffer-timeout.interval", a.getOrDefault("buffer_timeout_ms", "5") + " ms");
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setParallelism(Integer.parseInt(a.getOrDefault("parallelism", "1")));
    var builder = KafkaSource.<String>builder();
    for (Map.Entry<String, String> e : a.entrySet()) // kafka.<property>=<value>: the client's security settings
      if (e.getKey().startsWith("kafka.")) builder.setProperty(e.getKey().substring(6), e.getValue());
    KafkaSource<String> source =
        builder
            .setBootstrapServers(a.get("bootstrap"))
            .setTopics(a.get("topic"))
            .setGroupId(a.getOrDefault("group", "bench-flink"))
            .setStartingOffsets(OffsetsInitializer.latest())
            .setValueOnlyDeserializer(new SimpleStringSchema(StandardCharsets.UTF_8))
            .build();
    ObjectMapper json = new ObjectMapper();
    env.fromSource(source, WatermarkStrategy.noWatermarks(), "payments")
        .map(
            v -> {
              try {
                JsonNode n = json.readTree(v);
                JsonNode p = n.get("probe");
                return new Rec(n.path("user_id").asText(""), p == null ? null : p.asText());
              } catch (IOException e) {
                return new Rec("", null);
              }
            })
        .returns(Rec.class)
        .keyBy(r -> r.user)
        .process(
            new KeyedProcessFunction<String, Rec, Rec>() {
              @Override
              public void processElement(Rec r, Context ctx, Collector<Rec> out) {
                if (r.probe != null) out.collect(r);
              }
            })
        .returns(Rec.class)
        .sinkTo(new RedisProbeSink(a))
        .name("redis");
    env.execute("fastpath-passthrough");
  }
}
