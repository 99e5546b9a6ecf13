// The strict JSON parser nplbctl reads the control API with, and its JSON/YAML output.
#include "control/cli/json_value.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using nplb::JsonParseError;
using nplb::JsonTypeError;
using nplb::JsonValue;

namespace {

std::string error_of(std::string_view text, std::size_t depth = JsonValue::kDefaultMaxDepth) {
  try {
    JsonValue::parse(text, depth);
  } catch (const JsonParseError& e) {
    return e.what();
  }
  return "(accepted)";
}

bool accepted(std::string_view text) { return error_of(text) == "(accepted)"; }

}  // namespace

TEST(JsonValue, Scalars) {
  EXPECT_TRUE(JsonValue::parse("null").is_null());
  EXPECT_TRUE(JsonValue::parse(" true ").as_bool());
  EXPECT_FALSE(JsonValue::parse("\n\tfalse\r\n").as_bool());
  EXPECT_EQ(JsonValue::parse("\"web\"").as_string(), "web");
  EXPECT_EQ(JsonValue::parse("0").as_int64(), 0);
  EXPECT_EQ(JsonValue::parse("-12").as_int64(), -12);
  EXPECT_DOUBLE_EQ(JsonValue::parse("12.5").as_double(), 12.5);
  EXPECT_DOUBLE_EQ(JsonValue::parse("-1.5e3").as_double(), -1500.0);
  EXPECT_DOUBLE_EQ(JsonValue::parse("1E-2").as_double(), 0.01);
  // 64-bit counters keep every digit.
  JsonValue big = JsonValue::parse("18446744073709551615");
  EXPECT_EQ(big.as_uint64(), 18446744073709551615ull);
  EXPECT_EQ(big.number_text(), "18446744073709551615");
  EXPECT_EQ(big.dump(), "18446744073709551615");
  EXPECT_THROW(JsonValue::parse("18446744073709551616").as_uint64(), JsonTypeError);
  EXPECT_THROW(JsonValue::parse("1.5").as_int64(), JsonTypeError);
  EXPECT_THROW(JsonValue::parse("-1").as_uint64(), JsonTypeError);
}

TEST(JsonValue, ContainersKeepOrder) {
  JsonValue v = JsonValue::parse(
      R"({"services": [{"namespace": "default", "name": "web", "ports": [{"port": 80, "nodePort": 30080}]}],
          "z": {}, "a": [], "n": null})");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v.as_object()[0].first, "services");
  EXPECT_EQ(v.as_object()[1].first, "z");
  EXPECT_EQ(v.as_object()[2].first, "a");
  const JsonValue& svc = v["services"][0];
  EXPECT_EQ(svc["name"].as_string(), "web");
  EXPECT_EQ(svc["ports"][0]["nodePort"].as_int64(), 30080);
  // Lenient lookups for display code.
  EXPECT_TRUE(v["missing"].is_null());
  EXPECT_TRUE(v["services"][7].is_null());
  EXPECT_TRUE(svc["name"]["x"].is_null());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(svc["ports"][0]["port"].text_or(), "80");
  EXPECT_EQ(v["n"].text_or("<none>"), "<none>");
  EXPECT_THROW(v.as_array(), JsonTypeError);
  EXPECT_THROW(svc["name"].as_int64(), JsonTypeError);
}

TEST(JsonValue, StringEscapes) {
  EXPECT_EQ(JsonValue::parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(JsonValue::parse(R"("\u0041\u00e9\u20ac")").as_string(), "A\xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(JsonValue::parse(R"("\uD83D\uDE00")").as_string(), "\xF0\x9F\x98\x80");  // U+1F600
  EXPECT_EQ(JsonValue::parse(R"("\u0000x")").as_string(), std::string("\0x", 2));
  EXPECT_EQ(JsonValue::parse("\"caf\xC3\xA9 \xE2\x82\xAC\"").as_string(), "caf\xC3\xA9 \xE2\x82\xAC");
}

TEST(JsonValue, StrictRejections) {
  const std::vector<std::string> bad = {
      "",
      "   ",
      "nul",
      "True",
      "{} x",
      "[1] [2]",
      "1 2",
      "\"a\" ,",
      "[1,]",
      "[,1]",
      "{\"a\":1,}",
      "{\"a\" 1}",
      "{a: 1}",
      "{'a': 1}",
      "{\"a\": 1, \"a\": 2}",
      "[1 2]",
      "01",
      "-",
      "-01",
      "1.",
      ".5",
      "1e",
      "1e+",
      "+1",
      "NaN",
      "Infinity",
      "0x10",
      "\"abc",
      "\"a\\x\"",
      "\"a\\u12\"",
      "\"a\\u12G4\"",
      "\"\\uDE00\"",
      "\"\\uD83D\"",
      "\"\\uD83Dx\"",
      "\"\\uD83D\\u0041\"",
      "\"tab\there\"",
      "\"line\nbreak\"",
      "\"\xC3\"",
      "\"\xC0\xAF\"",           // overlong '/'
      "\"\xED\xA0\x80\"",       // encoded surrogate
      "\"\xF5\x80\x80\x80\"",   // beyond U+10FFFF
      "\"\x80\"",
      "\xEF\xBB\xBF{}",         // BOM
      "[1] // comment",
      "/* c */ 1",
      "{\"a\": 1}}",
      "[[1]",
  };
  for (const auto& text : bad) EXPECT_FALSE(accepted(text)) << "accepted: " << text;
}

TEST(JsonValue, ErrorPositions) {
  try {
    JsonValue::parse("{\n  \"a\": 1,\n  \"b\": tru\n}");
    FAIL();
  } catch (const JsonParseError& e) {
    EXPECT_EQ(e.line(), 3u);
    EXPECT_EQ(e.column(), 8u);
    EXPECT_EQ(std::string(e.what()), "JSON: line 3, column 8: unexpected character 't', expected a value");
  }
  EXPECT_EQ(error_of("[1] x"), "JSON: line 1, column 5: unexpected character 'x' after the value");
  EXPECT_EQ(error_of("{\"a\": 1, \"a\": 2}"), "JSON: line 1, column 10: duplicate key \"a\"");
  EXPECT_EQ(error_of("\"a\\q\""), "JSON: line 1, column 3: bad escape \\q");
  EXPECT_EQ(error_of(""), "JSON: line 1, column 1: empty input");
}

TEST(JsonValue, NestingLimit) {
  std::string ok = std::string(256, '[') + std::string(256, ']');
  EXPECT_TRUE(accepted(ok));
  std::string deep = std::string(257, '[') + std::string(257, ']');
  EXPECT_NE(error_of(deep).find("nesting deeper than 256 levels"), std::string::npos);
  // Very deep input fails cleanly, without exhausting the stack.
  std::string huge(1000000, '[');
  EXPECT_NE(error_of(huge).find("nesting deeper"), std::string::npos);
  std::string objs;
  for (int i = 0; i < 10; ++i) objs += "{\"a\":";
  objs += "1" + std::string(10, '}');
  EXPECT_TRUE(accepted(objs));
  EXPECT_FALSE(error_of(objs, 9) == "(accepted)");
  EXPECT_EQ(error_of(objs, 10), "(accepted)");
}

TEST(JsonValue, DumpRoundTrips) {
  std::string text =
      R"({"version": "0.1.0", "uptime_seconds": 12.5, "big": 18446744073709551615, "neg": -1e-7, )"
      R"("s": "quote\" slash\\ nl\n ctl\u0001 é", "list": [1, true, null, [], {}], "o": {"k": [{"a": 1}]}})";
  JsonValue v = JsonValue::parse(text);
  EXPECT_EQ(v.dump(), text.substr(0, text.find("ctl\\u0001")) + "ctl\\u0001 é\", \"list\": [1, true, null, [], {}], \"o\": {\"k\": [{\"a\": 1}]}}");
  EXPECT_EQ(JsonValue::parse(v.dump()), v);
  EXPECT_EQ(JsonValue::parse(v.dump(2)), v);
  EXPECT_EQ(JsonValue::parse(R"({"a": [1, {"b": []}], "c": {}})").dump(2),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": {}\n}");
}

TEST(JsonValue, Yaml) {
  JsonValue v = JsonValue::parse(R"({"services": [{"namespace": "default", "name": "web",
      "frontends": ["203.0.113.10", "2001:db8::10"], "ports": [{"name": "http", "port": 80, "nodePort": 30080,
      "backends": [{"address": "198.51.100.21", "state": "up"}]}], "empty": [], "none": {}}],
      "ok": true, "n": null, "tricky": ["", "true", "yes", "80", "1.5", "- x", "a: b", "#c", " pad",
      "2026-11-28T04:40:00Z", "line\nbreak", "-foo", "web1"], "nested": [[1, 2], []]})");
  EXPECT_EQ(v.to_yaml(),
            "services:\n"
            "- namespace: default\n"
            "  name: web\n"
            "  frontends:\n"
            "  - 203.0.113.10\n"
            "  - \"2001:db8::10\"\n"
            "  ports:\n"
            "  - name: http\n"
            "    port: 80\n"
            "    nodePort: 30080\n"
            "    backends:\n"
            "    - address: 198.51.100.21\n"
            "      state: up\n"
            "  empty: []\n"
            "  none: {}\n"
            "ok: true\n"
            "\"n\": null\n"  // YAML 1.1 reads a bare n as false
            "tricky:\n"
            "- \"\"\n"
            "- \"true\"\n"
            "- \"yes\"\n"
            "- \"80\"\n"
            "- \"1.5\"\n"
            "- \"- x\"\n"
            "- \"a: b\"\n"
            "- \"#c\"\n"
            "- \" pad\"\n"
            "- \"2026-11-28T04:40:00Z\"\n"
            "- \"line\\nbreak\"\n"
            "- -foo\n"
            "- web1\n"
            "nested:\n"
            "-\n"
            "  - 1\n"
            "  - 2\n"
            "- []\n");
  EXPECT_EQ(JsonValue::parse("{}").to_yaml(), "{}\n");
  EXPECT_EQ(JsonValue::parse("\"x\"").to_yaml(), "x\n");
}
