package lakehouse.spark;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import lakehouse.spark.FraudRules.Pay;
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
    long newest = st.pays.get(st.pays.size() - 1).t;
    getHandle().registerTimer(Math.floorDiv(newest + FraudRules.TRAVEL_US, 1000L) + lateHorizonMs + 1);
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timers) {
    long wm = timers.getCurrentWatermarkInMs();
    long cut = cutMicros(wm);
    List<Row> out = new ArrayList<>();
    List<Pay> news = new ArrayList<>();
    Map<String, Row> newRows = new HashMap<>();
    PayState st = null;
    Set<String> ids = null;
    while (rows.hasNext()) {
      Row r = rows.next();
      if (!r.isNullAt(c.error) || r.isNullAt(c.card)) {
        out.add(pass(r, null, false));
        continue;
      }
      if (st == null) {
        st = load();
        ids = new HashSet<>();
        for (Pay p : st.pays) ids.add(p.id);
      }
      Pay p = new Pay();
      p.id = r.getString(c.eventId);
      if (!ids.add(p.id)) continue; // already judged: a late copy the dedup horizon no longer covers
      p.t = PayState.micros((java.sql.Timestamp) r.get(c.eventTime));
      p.amount = r.getDouble(c.amount);
      p.country = r.getString(c.country);
      p.user = r.getString(c.user);
      p.card = r.getString(c.card);
      p.merchant = r.getString(c.merchant);
      p.stored = p.t >= cut;
      news.add(p);
      newRows.put(p.id, r);
    }
    if (news.isEmpty()) return CollectionConverters.asScala(out.iterator());

    List<Pay> held = new ArrayList<>(st.pays);
    boolean judgeOnly = false;
    for (Pay p : news) {
      if (p.stored) held.add(p);
      else judgeOnly = true;
    }
    held.sort(null);
    int[] bits = FraudRules.cardBits(held);
    Set<Pay> fresh = new HashSet<>(news);
    for (int k = 0; k < held.size(); k++) {
      Pay p = held.get(k);
      if (fresh.contains(p)) {
        p.bits = bits[k];
      } else if (p.bits != bits[k]) {
        p.bits = bits[k];
        out.add(update(p, wm));
      }
    }
    if (judgeOnly) { // older than the horizon: judged with what is held, without changing it
      List<Pay> all = new ArrayList<>(held);
      for (Pay p : news) if (!p.stored) all.add(p);
      all.sort(null);
      int[] b = FraudRules.cardBits(all);
      for (int k = 0; k < all.size(); k++) if (!all.get(k).stored) all.get(k).bits = b[k];
    }
    for (Pay p : news) out.add(pass(newRows.get(p.id), p.bits, false));

    List<Pay> keep = new ArrayList<>(held.size());
    for (Pay p : held) if (p.t >= cut) keep.add(p);
    rearm(new PayState(keep, 0));
    return CollectionConverters.asScala(out.iterator());
  }

  @Override
  public scala.collection.Iterator<Row> handleExpiredTimer(
      String key, TimerValues timers, ExpiredTimerInfo info) {
    long cut = cutMicros(timers.getCurrentWatermarkInMs());
    PayState st = load();
    List<Pay> keep = new ArrayList<>();
    for (Pay p : st.pays) if (p.t >= cut) keep.add(p);
    rearm(new PayState(keep, 0));
    return CollectionConverters.asScala(java.util.Collections.<Row>emptyIterator());
  }
}
