"""Dumps MLC-LLM's conversation templates (the `conv_template` object of mlc-chat-config.json) that qpack's
--to mlc writes, from MLC's own sources, as Tests/CommonTests/Fixtures/mlc/conv_templates.json.

usage: python mlc_conv_templates.py MLC_LLM_GIT_DIR OUT.json
(needs pydantic; the mlc-llm checkout is read with `git show HEAD:...`; nothing of it is kept but the output.)
The Swift copy (Sources/Common/Pack/MLCChatConfig.swift) is checked against this file by MLCPackTests.
"""
import importlib.util, json, subprocess, sys, tempfile, types, pathlib

git_dir, out = sys.argv[1], sys.argv[2]
names = ["llama-3", "llama-3_1", "llama-2", "mistral_default", "chatml", "qwen2", "qwen3", "LM"]
files = ["protocol/conversation_protocol.py", "conversation_template/registry.py", "conversation_template/llama.py",
         "conversation_template/mistral.py", "conversation_template/qwen2.py", "conversation_template/qwen3.py",
         "conversation_template/hermes.py", "conversation_template/gpt.py", "conversation_template/redpajama.py"]
tmp = pathlib.Path(tempfile.mkdtemp())
for pkg in ["mlc_llm", "mlc_llm.protocol", "mlc_llm.conversation_template"]:
    m = types.ModuleType(pkg); m.__path__ = [str(tmp / pkg.replace(".", "/"))]; sys.modules[pkg] = m
rev = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
for f in files:
    src = subprocess.run(["git", "--git-dir", git_dir, "show", "HEAD:python/mlc_llm/" + f], capture_output=True, text=True).stdout
    path = tmp / "mlc_llm" / f
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src)
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
load("mlc_llm.protocol.conversation_protocol", tmp / "mlc_llm/protocol/conversation_protocol.py")
reg = load("mlc_llm.conversation_template.registry", tmp / "mlc_llm/conversation_template/registry.py")
for f in files[2:]:
    try:
        load("mlc_llm.conversation_template." + pathlib.Path(f).stem, tmp / "mlc_llm" / f)
    except Exception as e:  # a template file may import something not needed here
        print("skipped", f, e, file=sys.stderr)
result = {}
for n in names:
    t = reg.ConvTemplateRegistry.get_conv_template(n)
    assert t is not None, n
    # gen_config passes to_json_dict() to MLCChatConfig, which validates it back into a Conversation and dumps it
    # whole (model_dump(by_alias=True)): None fields are written as null.
    conv = sys.modules["mlc_llm.protocol.conversation_protocol"].Conversation
    result[n] = conv.model_validate(t.to_json_dict()).model_dump(by_alias=True)
json.dump({"mlc_llm_commit": rev, "templates": result}, open(out, "w"), indent=2)
print(f"mlc-llm {rev}: {len(result)} templates: {', '.join(result)}")
