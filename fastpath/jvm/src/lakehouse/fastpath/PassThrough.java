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
 * <p>Arguments: {@code key=value} pairs (bootstrap, topic, group, redis_host, redis_port, out,
 * buffer_timeout_ms, parallelism); the Redis password, when set, comes from the environment
 * ({@code LAKEHOUSE_REDIS_PASSWORD}), never from the command line.
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
    final String host;
    final int port;
    final String stream;

    RedisProbeSink(String host, int port, String stream) {
      this.host = host;
      this.port = port;
      this.stream = stream;
    }

    @Override
    public SinkWriter<Rec> createWriter(WriterInitContext context) {
      Jedis jedis = new Jedis(host, port);
      String password = System.getenv("LAKEHOUSE_REDIS_PASSWORD");
      if (password != null && !password.isEmpty()) jedis.auth(password);
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
    KafkaSource<String> source =
        KafkaSource.<String>builder()
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
        .sinkTo(new RedisProbeSink(a.get("redis_host"), Integer.parseInt(a.get("redis_port")), a.get("out")))
        .name("redis");
    env.execute("fastpath-passthrough");
  }
}
