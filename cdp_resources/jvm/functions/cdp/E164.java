package cdp;

import com.google.i18n.phonenumbers.NumberParseException;
import com.google.i18n.phonenumbers.PhoneNumberUtil;
import com.google.i18n.phonenumbers.Phonenumber.PhoneNumber;
import org.apache.spark.sql.api.java.UDF2;

/**
 * A phone number in E.164 (+14155550123), read in the record's country (ISO 3166 alpha-2, or null
 * when the number must carry its own +country code); null when it does not parse or is not a valid
 * number. Google's libphonenumber, the library Python's phonenumbers ports, run inside Spark's JVM.
 */
public final class E164 implements UDF2<String, String, String> {
    private static final PhoneNumberUtil PHONES = PhoneNumberUtil.getInstance();

    @Override
    public String call(String raw, String region) {
        if (raw == null) {
            return null;
        }
        try {
            PhoneNumber number = PHONES.parse(raw, region);
            return PHONES.isValidNumber(number) ? PHONES.format(number, PhoneNumberUtil.PhoneNumberFormat.E164) : null;
        } catch (NumberParseException unreadable) {
            return null;
        }
    }
}
