package lakehouse.spark;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import lakehouse.core.CardJudge;
import lakehouse.core.FraudRules;
import lakehouse.core.UserJudge;
import lakehouse.core.FraudRules.Pay;
import lakehouse.core.PayState;
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

  private void save(PayState st) {
    clearTimers();
    if (st.pays.isEmpty()) {
      state.clear();
      return;
    }
    state.update(st.encode());
    getHandle().registerTimer(UserJudge.expiryMs(st, retentionMs));
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timers) {
    long wm = timers.getCurrentWatermarkInMs();
    List<Row> out = new ArrayList<>();
    List<UserJudge.Arrival> arrivals = new ArrayList<>();
    Map<Pay, Row> rowOf = new IdentityHashMap<>();
    while (rows.hasNext()) {
      Row r = rows.next();
      if (!r.isNullAt(c.error) || r.isNullAt(c.user)) {
        out.add(emit(r, 0, "pass", null, null));
        continue;
      }
      String id = r.getString(c.eventId);
      int cardBits = r.isNullAt(c.width - 2) ? 0 : r.getInt(c.width - 2);
      boolean upd = !r.isNullAt(c.width - 1) && r.getBoolean(c.width - 1);
      if (upd) {
        arrivals.add(new UserJudge.Arrival(id, cardBits, null));
        continue;
      }
      Pay p = new Pay();
      p.id = id;
      p.t = PayState.micros((java.sql.Timestamp) r.get(c.eventTime));
      p.amount = r.getDouble(c.amount);
      p.user = r.getString(c.user);
      p.card = r.getString(c.card);
      p.merchant = r.getString(c.merchant);
      arrivals.add(new UserJudge.Arrival(id, cardBits, p));
      rowOf.put(p, r);
    }
    if (arrivals.isEmpty()) return CollectionConverters.asScala(out.iterator());
    UserJudge.Outcome o = UserJudge.judge(load(), arrivals, wm, CardJudge.cutMicros(wm, lateHorizonMs));
    if (o.next == null) return CollectionConverters.asScala(out.iterator());
    for (UserJudge.Change ch : o.changed) out.add(update(ch.pay, wm, ch.verdict, ch.wasFlagged));
    for (Pay p : o.judged) out.add(emit(rowOf.get(p), p.bits | p.otherBits, "new", p.counted, false));
    save(o.next);
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
