package lakehouse.spark;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import lakehouse.core.RecordValidator;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The silver validator as a Spark SQL function: {@link RecordValidator} (jvm/core, shared with the
 * fraud fast path) with its output as {@code struct<_error, <typed fields>, _extra>}. It takes the
 * record's bytes (a string column cast to binary keeps them as Kafka delivered them), so a record
 * that is not UTF-8 is judged invalid instead of reaching silver with its bytes replaced.
 */
public final class Validator implements UDF2<byte[], Long, Row>, Serializable {
  private static final long serialVersionUID = 1L;

  private final RecordValidator validator;

  /** The validator for PROGRAM, the JSON written by {@code lakehouse.validation.program}. */
  public Validator(String program) {
    validator = new RecordValidator(program);
  }

  /** {@code struct<_error string, <field> <spark type>..., _extra string>}. */
  public StructType outputType() {
    List<StructField> out = new ArrayList<>();
    out.add(DataTypes.createStructField("_error", DataTypes.StringType, true));
    String[] names = validator.fieldNames();
    String[] types = validator.fieldTypes();
    for (int i = 0; i < names.length; i++) out.add(DataTypes.createStructField(names[i], sparkType(types[i]), true));
    out.add(DataTypes.createStructField("_extra", DataTypes.StringType, true));
    return DataTypes.createStructType(out);
  }

  private static DataType sparkType(String t) {
    switch (t) {
      case "string":
        return DataTypes.StringType;
      case "double":
        return DataTypes.DoubleType;
      case "bigint":
        return DataTypes.LongType;
      case "boolean":
        return DataTypes.BooleanType;
      case "timestamp":
        return DataTypes.TimestampType;
      default:
        throw new IllegalArgumentException("unsupported Spark type " + t);
    }
  }

  /** Registers the validator of PROGRAM as the SQL function NAME in SPARK's session. */
  public static void register(SparkSession spark, String name, String program) {
    Validator v = new Validator(program);
    spark.udf().register(name, v, v.outputType());
  }

  @Override
  public Row call(byte[] value, Long nowMicros) {
    return RowFactory.create(validator.check(value, nowMicros, true));
  }
}
