package lakehouse.spark;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
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
 * The user rules (velocity, amount_spike) in keyed state, one group per user_id, and the final verdict.
 *
 * <p>Input: {@link CardFraud}'s output (new payments with their card verdict, and card verdict
 * updates of held payments). State: the user's payments at or after the same horizon as the card
 * state, plus the 20 newest before it (amount_spike's history), each with its card and user
 * verdict and whether it counted in its merchant minute (on time when it arrived). Output: the
 * input row plus {@code rules}, {@code score}, {@code _verdict} ("new" for every new payment,
 * "update" for a held payment whose rules changed, "pass" for records that are not payments),
 * {@code _counted} and {@code _was_flagged} (the rules were not empty before). An event-time
 * timer forgets a user idle for the retention period.
 */
public final class UserFraud extends KeyedPayments {
  private static final long serialVersionUID = 1L;
  private static final long MINUTE_US = 60_000_000L;
  private final long retentionMs;

  UserFraud(Cols c, long lateHorizonMs, long retentionMs) {
    super(c, lateHorizonMs, "user");
    this.retentionMs = retentionMs;
  }

  private Row emit(Row r, int combined, String verdict, Boolean counted, Boolean wasFlagged) {
    Object[] v = new Object[c.width + 5];
    if (r != null) for (int i = 0; i < c.width; i++) v[i] = r.get(i);
    if (verdict != null && !verdict.equals("pass")) {
      v[c.width] = CollectionConverters.asScala(FraudRules.names(combined)).toSeq();
      v[c.width + 1] = FraudRules.score(combined);
    }
    v[c.width + 2] = verdict;
    v[c.width + 3] = counted;
    v[c.width + 4] = wasFlagged;
    return RowFactory.create(v);
  }

  private Row update(Pay p, long wm, int combined, boolean wasFlagged) {
    Object[] v = new Object[c.width];
    v[c.eventId] = p.id;
    v[c.eventTime] = PayState.timestamp(p.t);
    v[c.amount] = p.amount;
    v[c.user] = p.user;
    v[c.card] = p.card;
    v[c.merchant] = p.merchant;
    v[c.wm] = wm;
    return emit(RowFactory.create(v), combined, "update", p.counted, wasFlagged);
  }

  private void save(PayState st, long cut) {
    // Keep the horizon, plus the 20 newest older payments: amount_spike's "20 previous".
    int older = 0;
    while (older < st.pays.size() && st.pays.get(older).t < cut) older++;
    int drop = Math.max(0, older - FraudRules.SPIKE_HISTORY);
    List<Pay> keep = new ArrayList<>(st.pays.subList(drop, st.pays.size()));
    clearTimers();
    if (keep.isEmpty()) {
      state.clear();
      return;
    }
    state.update(new PayState(keep, st.dropped + drop).encode());
    long newest = keep.get(keep.size() - 1).t;
    getHandle().registerTimer(Math.floorDiv(newest, 1000L) + retentionMs + 1);
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timers) {
    long wm = timers.getCurrentWatermarkInMs();
    long cut = cutMicros(wm);
    List<Row> out = new ArrayList<>();
    PayState st = null;
    Map<String, Pay> byId = null;
    Map<Pay, Integer> before = new IdentityHashMap<>(); // combined verdict of held payments before this batch
    List<Pay> news = new ArrayList<>();
    Map<String, Row> newRows = new HashMap<>();
    boolean changed = false;
    while (rows.hasNext()) {
      Row r = rows.next();
      if (!r.isNullAt(c.error) || r.isNullAt(c.user)) {
        out.add(emit(r, 0, "pass", null, null));
        continue;
      }
      if (st == null) {
        st = load();
        byId = new HashMap<>();
        for (Pay p : st.pays) {
          byId.put(p.id, p);
          before.put(p, p.bits | p.otherBits);
        }
      }
      String id = r.getString(c.eventId);
      int cardBits = r.isNullAt(c.width - 2) ? 0 : r.getInt(c.width - 2);
      boolean upd = !r.isNullAt(c.width - 1) && r.getBoolean(c.width - 1);
      Pay held = byId.get(id);
      if (upd) {
        if (held != null && held.otherBits != cardBits) {
          held.otherBits = cardBits;
          changed = true;
        }
        continue;
      }
      if (held != null || newRows.containsKey(id)) continue; // a late copy of a payment already judged
      Pay p = new Pay();
      p.id = id;
      p.t = PayState.micros((java.sql.Timestamp) r.get(c.eventTime));
      p.amount = r.getDouble(c.amount);
      p.user = r.getString(c.user);
      p.card = r.getString(c.card);
      p.merchant = r.getString(c.merchant);
      p.otherBits = cardBits;
      // On time for gold: its minute window had not ended by the watermark (the sink decides the same way).
      p.counted = Math.floorDiv(p.t, MINUTE_US) * MINUTE_US + MINUTE_US > wm * 1000L;
      p.stored = p.t >= cut;
      news.add(p);
      newRows.put(id, r);
    }
    if (st == null || (news.isEmpty() && !changed)) return CollectionConverters.asScala(out.iterator());

    List<Pay> held = new ArrayList<>(st.pays);
    boolean judgeOnly = false;
    for (Pay p : news) {
      if (p.stored) held.add(p);
      else judgeOnly = true;
    }
    held.sort(null);
    int[] bits = FraudRules.userBits(held, st.dropped);
    Set<Pay> fresh = new HashSet<>(news);
    for (int k = 0; k < held.size(); k++) {
      Pay p = held.get(k);
      if (bits[k] >= 0) p.bits = bits[k];
      if (fresh.contains(p)) continue;
      int was = before.get(p);
      int now = p.bits | p.otherBits;
      if (now != was) out.add(update(p, wm, now, was != 0));
    }
    if (judgeOnly) {
      List<Pay> all = new ArrayList<>(held);
      for (Pay p : news) if (!p.stored) all.add(p);
      all.sort(null);
      int[] b = FraudRules.userBits(all, st.dropped);
      for (int k = 0; k < all.size(); k++) if (!all.get(k).stored) all.get(k).bits = Math.max(0, b[k]);
    }
    for (Pay p : news) out.add(emit(newRows.get(p.id), p.bits | p.otherBits, "new", p.counted, false));
    save(new PayState(held, st.dropped), cut);
    return CollectionConverters.asScala(out.iterator());
  }

  @Override
  public scala.collection.Iterator<Row> handleExpiredTimer(
      String key, TimerValues timers, ExpiredTimerInfo info) {
    state.clear(); // no payment for the whole retention period: the user's history is forgotten
    clearTimers();
    return CollectionConverters.asScala(java.util.Collections.<Row>emptyIterator());
  }
}
