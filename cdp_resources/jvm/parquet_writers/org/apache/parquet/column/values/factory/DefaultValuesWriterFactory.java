package org.apache.parquet.column.values.factory;

import org.apache.parquet.column.ColumnDescriptor;
import org.apache.parquet.column.Encoding;
import org.apache.parquet.column.ParquetProperties;
import org.apache.parquet.column.ParquetProperties.WriterVersion;
import org.apache.parquet.column.values.ValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainBinaryDictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainDoubleDictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainFixedLenArrayDictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainFloatDictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainIntegerDictionaryValuesWriter;
import org.apache.parquet.column.values.dictionary.DictionaryValuesWriter.PlainLongDictionaryValuesWriter;
import org.apache.parquet.column.values.fallback.FallbackValuesWriter;

/**
 * Parquet's default values writer factory, in place of parquet-column 1.17.0's class of the same
 * name (it must precede Spark's parquet-column jar on the classpath). There, every factory hands
 * its work to one of two factories shared by the whole JVM, each holding the properties of the
 * file whose writer was set up last (apache/parquet-java#3497): when two files with different
 * settings are started at once (two Delta tables written concurrently in one Spark session), a
 * file's columns can be written with the other file's per-column dictionary settings. Here each
 * factory has its own delegate, as in parquet-java's fix (#3498); the rest is unchanged. Remove
 * this class once pyspark ships a parquet-column with that fix.
 */
public class DefaultValuesWriterFactory implements ValuesWriterFactory {

    private ValuesWriterFactory delegate;

    @Override
    public void initialize(ParquetProperties properties) {
        delegate = properties.getWriterVersion() == WriterVersion.PARQUET_1_0
                ? new DefaultV1ValuesWriterFactory()
                : new DefaultV2ValuesWriterFactory();
        delegate.initialize(properties);
    }

    @Override
    public ValuesWriter newValuesWriter(ColumnDescriptor descriptor) {
        return delegate.newValuesWriter(descriptor);
    }

    /** The dictionary writer of a column of `path`'s type (none for booleans). */
    static DictionaryValuesWriter dictionaryWriter(
            ColumnDescriptor path, ParquetProperties properties, Encoding dictPageEncoding, Encoding dataPageEncoding) {
        int maxSize = properties.getDictionaryPageSizeThreshold();
        switch (path.getType()) {
            case BOOLEAN:
                throw new IllegalArgumentException("no dictionary encoding for BOOLEAN");
            case BINARY:
                return new PlainBinaryDictionaryValuesWriter(
                        maxSize, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case INT32:
                return new PlainIntegerDictionaryValuesWriter(
                        maxSize, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case INT64:
                return new PlainLongDictionaryValuesWriter(
                        maxSize, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case INT96:
                return new PlainFixedLenArrayDictionaryValuesWriter(
                        maxSize, 12, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case DOUBLE:
                return new PlainDoubleDictionaryValuesWriter(
                        maxSize, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case FLOAT:
                return new PlainFloatDictionaryValuesWriter(
                        maxSize, dataPageEncoding, dictPageEncoding, properties.getAllocator());
            case FIXED_LEN_BYTE_ARRAY:
                return new PlainFixedLenArrayDictionaryValuesWriter(
                        maxSize, path.getTypeLength(), dataPageEncoding, dictPageEncoding, properties.getAllocator());
            default:
                throw new IllegalArgumentException("Unknown type " + path.getType());
        }
    }

    /** A dictionary writer falling back to `fallback` when the column's dictionary is enabled, else `fallback`. */
    static ValuesWriter dictWriterWithFallBack(
            ColumnDescriptor path,
            ParquetProperties properties,
            Encoding dictPageEncoding,
            Encoding dataPageEncoding,
            ValuesWriter fallback) {
        if (!properties.isDictionaryEnabled(path)) {
            return fallback;
        }
        return FallbackValuesWriter.of(dictionaryWriter(path, properties, dictPageEncoding, dataPageEncoding), fallback);
    }
}
