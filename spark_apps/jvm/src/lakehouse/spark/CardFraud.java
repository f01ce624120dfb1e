package lakehouse.spark;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import lakehouse.core.CardJudge;
import lakehouse.core.FraudRules.Pay;
import lakehouse.core.PayState;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.TimerValues;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The card rules (card_testing, impossible_travel) in keyed state, one group per card_token.
 *
 * <p>State: the card's payments with event time at or after {@code watermark - lateHorizon - 10 min}
 * (impossible_travel looks 10 minutes back). Each new payment is judged, and every held payment
 * whose card verdict it changes (an out-of-order arrival) is emitted again as an update row
 * ({@code _upd = true}) so the user operator and the sink can correct the alert. A payment older
 * than the horizon is judged against what is held but not kept. An event-time timer drops the
 * card once the watermark has passed its newest payment by the horizon. Output: the input row plus
 * {@code _card_bits} (FraudRules bits) and {@code _upd}; invalid records pass through.
 */
public final class CardFraud extends KeyedPayments {
  private static final long serialVersionUID = 1L;

  CardFraud(Cols c, long lateHorizonMs) {
    super(c, lateHorizonMs, "card");
  }

  private Row pass(Row r, Integer bits, boolean upd) {
    Object[] v = new Object[c.width + 2];
    for (int i = 0; i < c.width; i++) v[i] = r.get(i);
    v[c.width] = bits;
    v[c.width + 1] = upd;
    return RowFactory.create(v);
  }

  private Row update(Pay p, long wm) {
    Object[] v = new Object[c.width + 2];
    v[c.eventId] = p.id;
    v[c.eventTime] = PayState.timestamp(p.t);
    v[c.amount] = p.amount;
    v[c.country] = p.country;
    v[c.user] = p.user;
    v[c.card] = p.card;
    v[c.merchant] = p.merchant;
    v[c.wm] = wm;
    v[c.width] = p.bits;
    v[c.width + 1] = true;
    return RowFactory.create(v);
  }

  private void rearm(PayState st) {
    clearTimers();
    if (st.pays.isEmpty()) {
      state.clear();
      return;
    }
    state.update(st.encode());
    getHandle().registerTimer(CardJudge.expiryMs(st, lateHorizonMs));
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timers) {
    long wm = timers.getCurrentWatermarkInMs();
    List<Row> out = new ArrayList<>();
    List<Pay> arrivals = new ArrayList<>();
    Map<Pay, Row> rowOf = new IdentityHashMap<>();
    while (rows.hasNext()) {
      Row r = rows.next();
      if (!r.isNullAt(c.error) || r.isNullAt(c.card)) {
        out.add(pass(r, null, false));
        continue;
      }
      Pay p = new Pay();
      p.id = r.getString(c.eventId);
      p.t = PayState.micros((java.sql.Timestamp) r.get(c.eventTime));
      p.amount = r.getDouble(c.amount);
      p.country = r.getString(c.country);
      p.user = r.getString(c.user);
      p.card = r.getString(c.card);
      p.merchant = r.getString(c.merchant);
      arrivals.add(p);
      rowOf.put(p, r);
    }
    if (arrivals.isEmpty()) return CollectionConverters.asScala(out.iterator());
    CardJudge.Outcome o = CardJudge.judge(load(), arrivals, CardJudge.cutMicros(wm, lateHorizonMs));
    if (o.judged.isEmpty()) return CollectionConverters.asScala(out.iterator());
    for (Pay p : o.changed) out.add(update(p, wm));
    for (Pay p : o.judged) out.add(pass(rowOf.get(p), p.bits, false));
    rearm(o.next);
    return CollectionConverters.asScala(out.iterator());
  }

  @Override
  public scala.collection.Iterator<Row> handleExpiredTimer(
      String key, TimerValues timers, ExpiredTimerInfo info) {
    rearm(CardJudge.retain(load(), CardJudge.cutMicros(timers.getCurrentWatermarkInMs(), lateHorizonMs)));
    return CollectionConverters.asScala(java.util.Collections.<Row>emptyIterator());
  }
}
