package lakehouse.spark;

import lakehouse.core.PayState;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.ValueState;

/** What the card and user processors share: one key's payments as a binary value, and the horizon. */
abstract class KeyedPayments extends StatefulProcessor<String, Row, Row> {
  private static final long serialVersionUID = 1L;
  protected final Cols c;
  protected final long lateHorizonMs;
  private final String stateName;
  protected transient ValueState<byte[]> state;

  KeyedPayments(Cols c, long lateHorizonMs, String stateName) {
    this.c = c;
    this.lateHorizonMs = lateHorizonMs;
    this.stateName = stateName;
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    state = getHandle().getValueState(stateName, Encoders.BINARY(), TTLConfig.NONE());
  }

  protected PayState load() {
    return PayState.decode(state.exists() ? state.get() : null);
  }

  protected void clearTimers() {
    scala.collection.Iterator<Object> timers = getHandle().listTimers();
    while (timers.hasNext()) getHandle().deleteTimer((Long) timers.next());
  }
}
