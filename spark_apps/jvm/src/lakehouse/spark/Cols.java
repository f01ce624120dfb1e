package lakehouse.spark;

import java.io.Serializable;
import org.apache.spark.sql.types.StructType;

/** Positions of the columns the operators read, resolved once from the input schema. */
final class Cols implements Serializable {
  private static final long serialVersionUID = 1L;
  final int width;
  final int eventId;
  final int eventTime;
  final int error;
  final int partition;
  final int offset;
  final int wm;
  final int amount;
  final int country;
  final int user;
  final int card;
  final int merchant;
  final int cardBits;
  final int upd;

  Cols(StructType s) {
    width = s.size();
    eventId = s.fieldIndex("event_id");
    eventTime = s.fieldIndex("event_time");
    error = s.fieldIndex("_error");
    partition = s.fieldIndex("partition");
    offset = s.fieldIndex("offset");
    wm = idx(s, "_wm");
    amount = idx(s, "amount");
    country = idx(s, "country");
    user = idx(s, "user_id");
    card = idx(s, "card_token");
    merchant = idx(s, "merchant_id");
    cardBits = idx(s, "_card_bits");
    upd = idx(s, "_upd");
  }

  private static int idx(StructType s, String name) {
    for (int i = 0; i < s.size(); i++) if (s.fields()[i].name().equals(name)) return i;
    return -1;
  }

  /** The grouping key of a row: VALUE (a valid row's key column) or its Kafka coordinates. */
  String key(org.apache.spark.sql.Row r, int valueIdx) {
    if (r.isNullAt(error) && !r.isNullAt(valueIdx)) return r.getString(valueIdx);
    return "\u0000" + r.get(partition) + ":" + r.get(offset);
  }
}
