// The control side's JSON writer: structure, separators, escaping, numbers.
#include "control/json_writer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace nplb {
namespace {

TEST(JsonWriter, EmptyContainers) {
  EXPECT_EQ(JsonWriter().begin_object().end_object().str(), "{}");
  EXPECT_EQ(JsonWriter().begin_array().end_array().str(), "[]");
  EXPECT_EQ(JsonWriter().begin_array().begin_array().end_array().begin_object().end_object().end_array().str(),
            "[[], {}]");
}

TEST(JsonWriter, Nesting) {
  JsonWriter w;
  w.begin_object();
  w.key("a").begin_array().value(1).value(2).begin_object().key("b").null().end_object().end_array();
  w.key("c").value(true);
  w.key("d").begin_object().key("e").begin_object().key("f").begin_array().end_array().end_object().end_object();
  w.key("g").value(false);
  w.end_object();
  EXPECT_EQ(w.str(), R"({"a": [1, 2, {"b": null}], "c": true, "d": {"e": {"f": []}}, "g": false})");
}

TEST(JsonWriter, KeysKeepInsertionOrder) {
  JsonWriter w;
  w.begin_object().key("z").value(1).key("a").value(2).key("m").value(3).end_object();
  EXPECT_EQ(w.str(), R"({"z": 1, "a": 2, "m": 3})");
}

TEST(JsonWriter, TheCheckOutputShape) {
  // The --check document of issue 2, built the way the control side builds it.
  JsonWriter w;
  w.begin_object();
  w.key("frontends").begin_array().value("203.0.113.10").end_array();
  w.key("nodes").begin_array();
  w.begin_object().key("name").value("n1").key("address").value("198.51.100.21").end_object();
  w.end_array();
  w.key("services").begin_array().begin_object();
  w.key("namespace").value("default").key("name").value("web").key("type").value("NodePort");
  w.key("ports").begin_array().begin_object();
  w.key("name").value("http").key("protocol").value("TCP").key("port").value(80).key("targetPort").value(8080);
  w.key("nodePort").value(30080);
  w.end_object().end_array();
  w.end_object().end_array();
  w.end_object();
  EXPECT_EQ(w.str(),
            R"({"frontends": ["203.0.113.10"], "nodes": [{"name": "n1", "address": "198.51.100.21"}], )"
            R"("services": [{"namespace": "default", "name": "web", "type": "NodePort", "ports": [{"name": "http", )"
            R"("protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]}]})");
}

TEST(JsonWriter, EscapesStrings) {
  EXPECT_EQ(JsonWriter::escape(""), R"("")");
  EXPECT_EQ(JsonWriter::escape("plain"), R"("plain")");
  EXPECT_EQ(JsonWriter::escape("a\"b"), R"("a\"b")");
  EXPECT_EQ(JsonWriter::escape("a\\b"), R"("a\\b")");
  EXPECT_EQ(JsonWriter::escape("l1\nl2\r\t"), R"("l1\nl2\r\t")");
  // Every other control character as \u00XX (RFC 8259 §7), NUL included.
  EXPECT_EQ(JsonWriter::escape(std::string_view("\x00", 1)), R"("\u0000")");
  EXPECT_EQ(JsonWriter::escape("\x01\x1f"), R"("\u0001\u001f")");
  // RFC 8259 §7's two-character forms where it has them.
  EXPECT_EQ(JsonWriter::escape("\b\f"), R"("\b\f")");
  // DEL is not a JSON control character, but escaping it keeps output printable.
  EXPECT_EQ(JsonWriter::escape("\x7f"), R"("\u007f")");
  EXPECT_EQ(JsonWriter::escape("a/b"), R"("a/b")");
  EXPECT_EQ(JsonWriter::escape("caf\xc3\xa9 \xe2\x9c\x93"), "\"caf\xc3\xa9 \xe2\x9c\x93\"") << "UTF-8 as is";
}

TEST(JsonWriter, EscapesKeysAndValues) {
  JsonWriter w;
  w.begin_object().key("we\"ird\nkey").value("va\\lue\x02").end_object();
  EXPECT_EQ(w.str(), R"({"we\"ird\nkey": "va\\lue\u0002"})");
}

TEST(JsonWriter, Integers) {
  auto one = [](auto v) { return JsonWriter().value(v).str(); };
  EXPECT_EQ(one(0), "0");
  EXPECT_EQ(one(-1), "-1");
  EXPECT_EQ(one(42u), "42");
  EXPECT_EQ(one(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(one(std::numeric_limits<int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(one(std::numeric_limits<uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(one(uint64_t{1} << 53 | 1), "9007199254740993") << "counters are exact, not doubles";
}

TEST(JsonWriter, Doubles) {
  auto one = [](double v) { return JsonWriter().value(v).str(); };
  EXPECT_EQ(one(0.5), "0.5");
  EXPECT_EQ(one(100.0), "100");
  EXPECT_EQ(one(-2.25), "-2.25");
  EXPECT_EQ(one(1e21), "1e+21");
  // JSON has no NaN or infinity.
  EXPECT_EQ(one(std::nan("")), "null");
  EXPECT_EQ(one(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(one(-std::numeric_limits<double>::infinity()), "null");
}

// Needs a change in control/json_writer.cpp: doubles are printed with "%.6g",
// so 1234567.0 comes out as 1.23457e+06 and 0.1234567 as 0.123457, which do
// not read back as the same number. Shortest round-trip output
// (std::to_chars) fixes it. Enable once it does.
TEST(JsonWriter, DoublesRoundTrip) {
  auto one = [](double v) { return JsonWriter().value(v).str(); };
  EXPECT_EQ(one(1234567.0), "1234567");
  EXPECT_EQ(one(0.1234567), "0.1234567");
  EXPECT_EQ(std::stod(one(0.1 + 0.2)), 0.1 + 0.2);
}

TEST(JsonWriter, Booleans) {
  EXPECT_EQ(JsonWriter().begin_array().value(true).value(false).null().end_array().str(), "[true, false, null]");
}

TEST(JsonWriter, CStringsAreStringsNotBooleans) {
  // A const char* must not decay to bool: the overload set takes care of it.
  EXPECT_EQ(JsonWriter().value("x").str(), R"("x")");
  const char* p = "y";
  EXPECT_EQ(JsonWriter().value(p).str(), R"("y")");
  EXPECT_EQ(JsonWriter().value(std::string("z")).str(), R"("z")");
}

}  // namespace
}  // namespace nplb
