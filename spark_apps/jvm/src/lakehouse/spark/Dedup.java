package lakehouse.spark;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Exact deduplication on event_id with state bounded in event time (transformWithState, event-time timers).
 *
 * <p>Grouped by event_id (valid records) or by Kafka coordinates (invalid ones, passed through).
 * A valid record is emitted the first time its event_id is seen and dropped afterwards. Its id is
 * remembered while {@code event_time >= watermark - horizon}; an event-time timer forgets it once
 * the watermark passes {@code event_time + horizon}. A record whose event_time is already older
 * than {@code watermark - horizon} when it arrives ("out of band") cannot be judged by the state
 * alone: it is emitted with {@code _check = true} and the sink looks its event_id up in the silver
 * table's partition. So the result is exact whatever the delay of a copy; the state holds only the
 * horizon.
 *
 * <p>Every output row carries {@code _wm}, the batch's event-time watermark (ms), so the sink
 * decides lateness with the very value the engine used (it is in the offset log: a replayed batch
 * sees the same value). The input must NOT carry the watermark column itself (drop it after
 * {@code withWatermark}): otherwise Spark would drop late rows before this operator sees them.
 */
public final class Dedup extends StatefulProcessor<String, Row, Row> {
  private static final long serialVersionUID = 1L;
  private final int idIdx;
  private final int timeIdx;
  private final int errorIdx;
  private final int partIdx;
  private final int offsetIdx;
  private final int width;
  private final long horizonMs;
  private transient ValueState<Long> seen;

  Dedup(int idIdx, int timeIdx, int errorIdx, int partIdx, int offsetIdx, int width, long horizonMs) {
    this.idIdx = idIdx;
    this.timeIdx = timeIdx;
    this.errorIdx = errorIdx;
    this.partIdx = partIdx;
    this.offsetIdx = offsetIdx;
    this.width = width;
    this.horizonMs = horizonMs;
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    seen = getHandle().getValueState("seen", Encoders.LONG(), TTLConfig.NONE());
  }

  private Row out(Row r, long wm, boolean check) {
    Object[] v = new Object[width + 2];
    for (int i = 0; i < width; i++) v[i] = r.get(i);
    v[width] = wm;
    v[width + 1] = check;
    return RowFactory.create(v);
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timers) {
    long wm = timers.getCurrentWatermarkInMs();
    List<Row> in = new ArrayList<>();
    while (rows.hasNext()) in.add(rows.next());
    if (in.size() > 1) {
      // The copy with the lowest Kafka coordinates is "the first copy".
      in.sort(
          (a, b) -> {
            int c = Integer.compare(a.getInt(partIdx), b.getInt(partIdx));
            return c != 0 ? c : Long.compare(a.getLong(offsetIdx), b.getLong(offsetIdx));
          });
    }
    List<Row> outRows = new ArrayList<>(in.size());
    boolean known = seen.exists();
    for (Row r : in) {
      if (!r.isNullAt(errorIdx)) {
        outRows.add(out(r, wm, false)); // invalid: quarantined by the sink, never deduplicated
        continue;
      }
      if (known) continue; // a later copy of an event already emitted
      known = true;
      long e = ((java.sql.Timestamp) r.get(timeIdx)).getTime();
      boolean outOfBand = e < wm - horizonMs;
      outRows.add(out(r, wm, outOfBand));
      if (!outOfBand) {
        seen.update(e);
        getHandle().registerTimer(e + horizonMs + 1);
      }
    }
    return CollectionConverters.asScala(outRows.iterator());
  }

  @Override
  public scala.collection.Iterator<Row> handleExpiredTimer(
      String key, TimerValues timers, ExpiredTimerInfo info) {
    seen.clear();
    return CollectionConverters.asScala(Collections.<Row>emptyIterator());
  }
}
