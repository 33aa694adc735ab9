"""Reference renderings for qkit's chat-template interpreter (Tests/CommonTests/ChatTemplateTests.swift).

Writes two fixtures under Tests/CommonTests/Fixtures/chat/:
  chat_reference.json  every template of that folder x 6-12 conversations, rendered by transformers'
                       tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)
                       with the SmolLM2 tokenizer of the asset directory and chat_template= per template;
  jinja_cases.json     small templates exercising one construct each, rendered by the same Jinja
                       environment transformers builds (_compile_jinja_template).

Run:  source ~/.cache/qkit-peers/venv/bin/activate
      python Tests/peer-checks/chat_template_reference.py ~/.cache/qkit-assets/smollm2-135m
"""
import json, os, sys

import jinja2, transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "CommonTests", "Fixtures", "chat")
asset = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/qkit-assets/smollm2-135m")
tok = AutoTokenizer.from_pretrained(asset)

# Special tokens each model's tokenizer passes (they override the SmolLM2 tokenizer's own map).
TEMPLATES = {
    "smollm2.jinja": {},
    "llama-3.1-instruct.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen2.5-instruct.jinja": {"eos_token": "<|im_end|>"},
    "qwen3.jinja": {"eos_token": "<|im_end|>"},
    "mistral-7b-instruct-v0.3.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
    "llama-2-chat.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
    "zephyr-7b-beta.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
}

def u(c): return {"role": "user", "content": c}
def a(c): return {"role": "assistant", "content": c}
def s(c): return {"role": "system", "content": c}

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"},
                               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
TOOL_CALL = [{"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]

CONVERSATIONS = [
    ("user only", [u("Hello!")], {}),
    ("system and user", [s("You are a terse assistant."), u("What is 2+2?")], {}),
    ("multi-turn", [u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."), a("Why did the chicken cross the road?"), u("Why?")], {}),
    ("system multi-turn ending with assistant", [s("Be kind."), u("Name a colour."), a("  Blue.  ")], {}),
    ("unicode", [u("Ünïcödé — 日本語のテキスト, emoji 🦙🚀, Ελληνικά, \"quotes\" and 'apostrophes' \\ backslash"), a("Très bien ✓ 👍")], {}),
    ("empty content", [u("")], {}),
    ("whitespace and newlines", [s("\n  Rules:\n- one\n- two  \n"), u("  line one\n\nline three\t "), a("\nanswer\n")], {}),
    ("roles do not alternate", [u("one"), u("two")], {}),
    ("tool call", [s("You can call tools."), u("Weather in Paris?"), {"role": "assistant", "content": "", "tool_calls": TOOL_CALL},
                   {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"temperature\": 22.5}"}],
     {"tools": [WEATHER_TOOL]}),
    ("tools offered", [u("Weather in Paris?")], {"tools": [WEATHER_TOOL]}),
    ("thinking", [u("What is 3*7?"), {"role": "assistant", "content": "<think>\n3*7 = 21\n</think>\n\n21"}, u("And 3*8?")], {}),
    ("reasoning_content no thinking", [u("2+2?"), {"role": "assistant", "content": "4", "reasoning_content": "simple sum"}],
     {"enable_thinking": False}),
]

def render_case(template, tokens, messages, gen, variables):
    try:
        out = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, chat_template=template,
                                      **tokens, **variables)
        return {"output": out}
    except Exception as e:
        return {"error": {"type": type(e).__name__, "message": str(e)}}

def chat_reference():
    result = {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "templates": []}
    for name, tokens in TEMPLATES.items():
        template = open(os.path.join(FIX, name), encoding="utf-8").read()
        special = {**tok.special_tokens_map, **tokens}
        cases = []
        for title, messages, variables in CONVERSATIONS:
            for gen in (False, True):
                if messages[-1]["role"] == "assistant" and gen:
                    continue
                r = render_case(template, tokens, messages, gen, variables)
                cases.append({"name": f"{title} (add_generation_prompt={gen})", "messages": messages,
                              "add_generation_prompt": gen, "variables": variables, **r})
        rendered = sum("output" in c for c in cases)
        print(f"{name}: {len(cases)} cases, {rendered} rendered, {len(cases) - rendered} errors")
        result["templates"].append({"file": name, "special_tokens": special, "cases": cases})
    return result

# Small templates, one construct each: (template, variables).
JINJA_CASES = [
    # output, literals, python printing
    ("{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 1.5 }}{{ -2 }}{{ true }}{{ false }}{{ none }}{{ True }}{{ None }}", {}),
    ("{{ [1, 'a', none, true, 2.0] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1,) }}|{{ (1, 2) }}|{{ () }}", {}),
    ("{{ \"it's\" }}|{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\there', 'nl\\n', '\\x00\\x7f'] }}", {}),
    ("{{ 1e20 }}|{{ 1e15 }}|{{ 1e16 }}|{{ 0.0001 }}|{{ 0.00001 }}|{{ 0.1 + 0.2 }}|{{ 1/3 }}|{{ 2.5e-10 }}|{{ -0.0 }}|{{ 123456789.125 }}", {}),
    ("{{ 'a' 'b' }}|{{ '\\u00e9\\U0001F600\\x41\\101\\q' }}|{{ 'multi\nline' }}", {}),
    ("{{ 1_000 }}|{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 1_0.5 }}", {}),
    ("{{ x }}", {"x": {"a": [1, {"b": None}], "c": "d", "e": 1.0, "f": True}}),
    # arithmetic and operators
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }}", {}),
    ("{{ 'ab' * 3 }} {{ 3 * 'x' }} {{ [1] * 3 }} {{ 1 + 1.5 }} {{ true + 1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ [1] + [2] }}", {}),
    ("{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ - 3 + 4 }} {{ + 3 }} {{ 10 - 2 - 3 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ undefined_name ~ [1] }}", {}),
    ("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'abc' < 'abd' }} {{ [1, 2] < [1, 3] }} {{ 2 >= 2 }} {{ 1 <= 0 }}", {}),
    ("{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 in (1, 2) }} {{ 'x' in undefined_name }}", {}),
    ("{{ 1 and 2 }}|{{ 0 and 2 }}|{{ 0 or 'x' }}|{{ '' or [] }}|{{ not 0 }}|{{ not not 'a' }}|{{ none or none is none }}", {}),
    ("{{ 'yes' if x else 'no' }}|{{ 'yes' if not x else 'no' }}|{{ 'only' if x }}|{{ 'a' if false else 'b' if false else 'c' }}", {"x": 1}),
    ("{{ {'a': 1} == {'a': 1.0} }} {{ [1, [2]] == [1, [2]] }} {{ (1, 2) == [1, 2] }} {{ none == none }} {{ x == y }}", {"x": {"a": [1]}, "y": {"a": [1]}}),
    # attribute / item access, slices
    ("{{ m.role }}|{{ m['role'] }}|{{ m.missing }}|{{ m['missing'] is defined }}|{{ m.content.content is defined }}|{{ l[0] }}{{ l[-1] }}{{ l[9] }}|{{ l.0 }}", {"m": {"role": "user", "content": "hi"}, "l": [1, 2, 3]}),
    ("{{ l[1:] }}|{{ l[:2] }}|{{ l[::-1] }}|{{ l[-2:] }}|{{ l[::2] }}|{{ l[5:] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-1] }}|{{ s[:-1] }}|{{ l[3:0:-1] }}", {"l": [1, 2, 3, 4], "s": "héllo"}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 'dflt') }}", {"d": {"a": 1, "b": [2]}}),
    ("{{ d.items is defined }}|{{ d['items'] is defined }}|{{ d.nokey is defined }}|{{ l.append is defined }}", {"d": {"a": 1}, "l": [1]}),
    # string methods
    ("{{ '  x y  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n a\\n'.lstrip() }}|{{ 'a\\n\\n'.rstrip('\\n') }}|{{ 'ab'.upper() }}{{ 'AB'.lower() }}|{{ \"they're bill's\".title() }}|{{ 'hELLO'.capitalize() }}", {}),
    ("{{ 'a,b,,c'.split(',') }}|{{ '  a  b \\n c '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'a\\nb\\r\\nc'.splitlines() }}", {}),
    ("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.count('l') }}|{{ '-'.join(['a', 'b']) }}|{{ '{} and {}'.format(1, 'x') }}|{{ '{0}{name}'.format('p', name='q') }}", {}),
    ("{{ '12'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}{{ 'ab'.islower() }}{{ 'AB'.isupper() }}|{{ '7'.zfill(3) }}|{{ 'ab'.center(6, '*') }}|{{ 'ab'.ljust(4) }}|", {}),
    # filters
    ("{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'a-b c'|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ 'abc'|reverse }}|{{ [1, 2]|reverse|list }}", {}),
    ("{{ [1, 2, 3]|length }}{{ 'héllo'|length }}{{ {'a': 1}|length }}{{ undefined_name|length }}{{ [1, 2]|count }}|{{ [1, 2]|first }}{{ [1, 2]|last }}{{ 'ab'|first }}|{{ []|first is defined }}", {}),
    ("{{ ['a', 'b']|join(', ') }}|{{ [1, 2]|join }}|{{ users|join(', ', attribute='name') }}|{{ users|map(attribute='name')|list }}|{{ ['a', 'b']|map('upper')|join }}|{{ users|map(attribute='age', default=0)|list }}", {"users": [{"name": "x", "age": 3}, {"name": "y"}]}),
    ("{{ msgs|selectattr('role', 'equalto', 'user')|list|length }}|{{ msgs|rejectattr('role', 'equalto', 'tool')|map(attribute='role')|join(',') }}|{{ msgs|selectattr('tool_calls', 'undefined')|list|length }}|{{ msgs|selectattr('tool_calls')|list|length }}|{{ [0, 1, 2, '']|select|list }}|{{ [1, 2, 3, 4]|reject('odd')|list }}|{{ ['a', 'code', 'b']|reject('equalto', 'code')|list }}", {"msgs": [{"role": "user"}, {"role": "assistant", "tool_calls": [1]}, {"role": "tool"}, {"role": "user"}]}),
    ("{{ x|default('d') }}|{{ none|default('d') }}|{{ ''|default('d', true) }}|{{ 0|d('z', boolean=true) }}|{{ 'v'|default('d') }}", {}),
    ("{{ '3'|int }}{{ '3.7'|int }}{{ 'x'|int }}{{ 'x'|int(7) }}{{ 3.9|int }}{{ true|int }}{{ '0x1A'|int(0, 16) }}|{{ '2.5'|float }}{{ 'x'|float }}{{ 3|float }}|{{ 1|string }}{{ [1]|string }}{{ none|string }}|{{ -3|abs }}{{ 2.5|round }}{{ 3.5|round }}{{ 2.567|round(2) }}{{ 2.1|round(0, 'ceil') }}{{ 2.9|round(method='floor') }}", {}),
    ("{{ {'b': 1, 'a': 2}|items|list }}|{{ undefined_name|items|list }}|{{ {'b': 1, 'a': 2}|dictsort }}|{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'c']|sort }}|{{ ['b', 'A', 'c']|sort(case_sensitive=true) }}|{{ [3, 1]|sort(reverse=true) }}|{{ users|sort(attribute='age')|map(attribute='name')|join }}", {"users": [{"name": "x", "age": 3}, {"name": "y", "age": 1}]}),
    ("{{ ['b', 'A', 'a', 'b']|unique|list }}|{{ ['b', 'A', 'a']|unique(case_sensitive=true)|list }}|{{ [3, 1, 2]|min }}{{ [3, 1, 2]|max }}{{ ['b', 'A']|max }}|{{ [1, 2, 3]|sum }}{{ users|sum(attribute='age') }}|{{ 'a b  c'|wordcount }}|{{ '<a&\\'\">'|e }}|{{ 'x'|safe }}|{{ 'ab'|center(6) }}|{{ '%s-%d'|format('a', 3) }}|{{ 'x'|replace('x', 'y') }}", {"users": [{"age": 3}, {"age": 1}]}),
    ("{{ 'x\\ny\\n\\nz'|indent }}|{{ 'x\\ny\\n'|indent(2, true) }}|{{ 'x\\n\\ny'|indent(2, blank=true) }}|{{ 'a\\nb'|indent('> ') }}", {}),
    # tojson
    ("{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(indent=0) }}|{{ x|tojson(sort_keys=true) }}|{{ x|tojson(separators=(',', ':')) }}|{{ x|tojson(true) }}|{{ 'é'|tojson(ensure_ascii=true) }}", {"x": {"s": "héllo \"q\" \\ \n\t\u0001 \u2028 🦙", "i": 1, "f": 2.5, "g": 1e-7, "h": 1e20, "b": False, "n": None, "l": [1, [], {}], "z": {"k": [1, 2]}}}),
    ("{{ [1, (2, 3)]|tojson }}|{{ {'a': 1}|tojson(indent='\\t') }}|{{ 1.0|tojson }}|{{ ''|tojson }}|{{ none|tojson }}", {}),
    # tests
    ("{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ none is none }}{{ 1 is number }}{{ 1.5 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ 1 is boolean }}", {"x": 1}),
    ("{{ 'a' is string }}{{ {} is mapping }}{{ [] is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}{{ y is iterable }}{{ {} is sequence }}{{ 1 is sequence }}{{ y is sequence }}{{ true is true }}{{ 1 is true }}{{ false is false }}", {}),
    ("{{ 2 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is gt 1 }}{{ 2 is ge 2 }}{{ 1 is le 0 }}{{ 'a' is in 'ab' }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ none is sameas none }}{{ x is not none }}{{ range is callable }}", {"x": 1}),
    # statements
    ("{% if x %}a{% elif y %}b{% else %}c{% endif %}|{% if not x and y %}d{% endif %}|{% if x is defined and x > 0 %}e{% endif %}", {"y": 1}),
    ("{% for i in range(3) %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("{% for i in [] %}x{% else %}empty{% endfor %}|{% for c in 'ab' %}{{ c }}{% endfor %}|{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}|{% for x in undefined_name %}x{% endfor %}|{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }}{% endfor %}", {}),
    ("{% for m in msgs if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ '|' if not loop.last }}{% endfor %}", {"msgs": [{"role": "system"}, {"role": "user"}, {"role": "assistant"}]}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ range(2, 10, 3)|list }}|{{ range(5, 0, -2)|list }}", {}),
    ("{% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.depth }}{{ x }}{% endfor %}{{ loop.depth }}{% endfor %}|{% for x in 'abc' %}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }}{% endfor %}", {}),
    ("{% set x = 1 %}{% set y, z = 2, 3 %}{{ x }}{{ y }}{{ z }}|{% set t = 1, 2 %}{{ t }}|{% set x = x + 1 %}{{ x }}", {}),
    ("{% set x = 5 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}[{{ x }}]|{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("{% set ns = namespace(found=false, n=0) %}{% for i in [1, 2, 3] %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.found }} {{ ns.n }} {{ ns.missing is defined }}|{% set ns2 = namespace() %}{% set ns2.v = 'x' %}{{ ns2.v }}", {}),
    ("{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]|{% set up | upper %}shout{% endset %}{{ up }}|{% filter upper %}abc{{ 'd' }}{% endfilter %}|{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a is defined }}", {}),
    ("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet('Cy', 'Yo') }}|{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }}", {}),
    ("{% generation %}gen {{ 1 }}{% endgeneration %}|{% raw %}{{ not rendered }}{% if %}{% endraw %}|{# a comment #}after", {}),
    # whitespace control
    ("a  {{- ' b ' -}}  c\n{{ 'd' }}  \n  {{- 'e' }}", {}),
    ("{% if true %}\n    yes\n{% endif %}\nnext\n    {% if true %}\n  indented\n    {% endif %}\nend\n", {}),
    ("line1\n  {%- if true %}\n  x\n  {%- endif %}\n  {%+ if true %}keep{% endif %}\n  {% if true +%}\n  notrim\n{% endif %}", {}),
    ("  {# comment #}\n  {%- for i in [1, 2] -%}\n    {{ i }}\n  {%- endfor %}\n\n{{ 'tail' }}\n\n", {}),
    ("a\r\nb\rc\n{% if true %}\r\nd\r\n{% endif %}\r\n", {}),
    ("  {% raw %}  raw {{ x }}\n  {%- endraw %}  after\n", {}),
    ("{{ 'x' -}}\n\n   {# c -#}\n   y {#- d #}   z", {}),
    # globals
    ("{{ raise_exception is defined }}{{ strftime_now is defined }}{{ namespace is defined }}{{ dict(a=1) }}{{ range(3)|list }}", {}),
    ("{{ messages|length }}{{ add_generation_prompt }}{{ tools }}{{ documents }}", {"messages": [1], "add_generation_prompt": True, "tools": None, "documents": None}),
    # errors
    ("{{ x.y }}", {}),
    ("{{ undefined_name + 1 }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 1 < 'a' }}", {}),
    ("{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", {}),
    ("{% if x %}\n{{ raise_exception('Only user and assistant roles are supported!') }}\n{% endif %}", {"x": True}),
    ("{{ undefined_name() }}", {}),
    ("{{ [1].append(2) }}", {}),
    ("{{ 1|items|list }}", {}),
    ("{{ none|length }}", {}),
    ("{% for x in none %}{% endfor %}", {}),
    ("{% set a, b = [1] %}", {}),
    ("{% set l = [1] %}{% set l.x = 1 %}", {}),
    ("{{ range(200000)|length }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ x|tojson }}", {}),
    # syntax errors
    ("{% if x %}\nno end", {}),
    ("line\n{% for x in y %}\n{% endif %}", {}),
    ("{{ x |nosuchfilter }}", {}),
    ("\n\n{{ x is nosuchtest }}", {}),
    ("{{ 'unterminated }}", {}),
    ("{{ 1 + }}", {}),
    ("{% nosuchtag %}", {}),
    ("a\n{{ x", {}),
    ("{# never closed", {}),
    ("{% do x %}", {}),
    ("{% endif %}", {}),
    ("{% break %}", {}),
    ("{{ (1, 2 }}", {}),
    ("{% set 1 = 2 %}", {}),
    ("{% for %}{% endfor %}", {}),
]

def error_kind(e):
    if isinstance(e, (jinja2.exceptions.TemplateSyntaxError, jinja2.exceptions.TemplateAssertionError, SyntaxError)):
        return "syntax"
    if type(e) is jinja2.exceptions.TemplateError:
        return "raised"
    if isinstance(e, OverflowError):
        return "limit"
    return "render"

def jinja_cases():
    cases = []
    for template, variables in JINJA_CASES:
        case = {"template": template, "variables": variables}
        try:
            case["output"] = _compile_jinja_template(template).render(**variables)
        except Exception as e:
            case["error"] = {"kind": error_kind(e), "type": type(e).__name__, "message": str(e)}
            if isinstance(e, jinja2.exceptions.TemplateSyntaxError):
                case["error"]["line"] = e.lineno
        cases.append(case)
    errors = sum("error" in c for c in cases)
    print(f"jinja_cases: {len(cases)} cases, {len(cases) - errors} rendered, {errors} errors")
    return {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "cases": cases}

def dump(name, obj):
    with open(os.path.join(FIX, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")

print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}")
dump("chat_reference.json", chat_reference())
dump("jinja_cases.json", jinja_cases())
