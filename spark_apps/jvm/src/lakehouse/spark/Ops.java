package lakehouse.spark;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * Entry points the PySpark apps call (through py4j): the stateful operators of the refine stream.
 *
 * <p>All run as transformWithState in event-time mode, with RocksDB state and event-time timers,
 * so the work per micro-batch is proportional to the batch (timers are found by a range scan,
 * not by iterating the state). The input must not carry the watermark column (see {@link Dedup}).
 */
public final class Ops {
  private Ops() {}

  static StructType nullable(StructType s) {
    StructField[] fields = new StructField[s.size()];
    for (int i = 0; i < fields.length; i++) {
      StructField f = s.fields()[i];
      fields[i] = new StructField(f.name(), f.dataType(), true, f.metadata());
    }
    return new StructType(fields);
  }

  /** Deduplicate on event_id; adds {@code _wm} (the batch watermark, ms) and {@code _check}. */
  public static Dataset<Row> dedup(Dataset<Row> in, long horizonMs) {
    StructType s = in.schema();
    Cols c = new Cols(s);
    StructType out = s.add("_wm", DataTypes.LongType, true).add("_check", DataTypes.BooleanType, true);
    Dedup processor = new Dedup(c.eventId, c.eventTime, c.error, c.partition, c.offset, c.width, horizonMs);
    return in.groupByKey((MapFunction<Row, String>) r -> c.key(r, c.eventId), Encoders.STRING())
        .transformWithState(processor, TimeMode.EventTime(), OutputMode.Append(), Encoders.row(out));
  }

  /**
   * The fraud rules in keyed state: card rules per card_token, then user rules and the verdict per
   * user_id. Adds {@code rules}, {@code score}, {@code _verdict}, {@code _counted}, {@code _was_flagged}
   * (and the intermediate {@code _card_bits}, {@code _upd}).
   */
  public static Dataset<Row> fraud(Dataset<Row> in, long lateHorizonMs, long retentionMs) {
    // Verdict updates of held payments carry only the payment's columns: every column is nullable.
    StructType s = nullable(in.schema());
    Cols c = new Cols(s);
    StructType cardOut = s.add("_card_bits", DataTypes.IntegerType, true).add("_upd", DataTypes.BooleanType, true);
    Dataset<Row> cards =
        in.groupByKey((MapFunction<Row, String>) r -> c.key(r, c.card), Encoders.STRING())
            .transformWithState(
                new CardFraud(c, lateHorizonMs), TimeMode.EventTime(), OutputMode.Append(), Encoders.row(cardOut));
    Cols uc = new Cols(cardOut);
    StructType userOut =
        cardOut
            .add("rules", new ArrayType(DataTypes.StringType, false), true)
            .add("score", DataTypes.DoubleType, true)
            .add("_verdict", DataTypes.StringType, true)
            .add("_counted", DataTypes.BooleanType, true)
            .add("_was_flagged", DataTypes.BooleanType, true);
    return cards
        .groupByKey((MapFunction<Row, String>) r -> uc.key(r, uc.user), Encoders.STRING())
        .transformWithState(
            new UserFraud(uc, lateHorizonMs, retentionMs), TimeMode.EventTime(), OutputMode.Append(), Encoders.row(userOut));
  }
}
