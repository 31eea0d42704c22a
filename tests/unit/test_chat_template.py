"""Chat templates: the GGUF's own Jinja, sandboxed, and fallbacks by architecture."""

from __future__ import annotations

import datetime
from pathlib import Path

import gguf
import pytest

from engine.errors import GenerationError
from engine.inference.chat_template import (
    ChatTemplate,
    PromptBuilder,
    choose_template,
    render,
    render_conversation,
)
from engine.inference.session import ChatSession
from engine.types import Message

CHAT = [
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello!"),
    Message("user", "Bye"),
]


def gguf_template(path: Path) -> str:
    field = gguf.GGUFReader(path).get_field("tokenizer.chat_template")
    assert field is not None
    return str(field.contents())


def tpl(text: str) -> ChatTemplate:
    return ChatTemplate("gguf", text)


class TestChoose:
    def test_gguf_template_wins(self) -> None:
        chosen = choose_template("{{ 'x' }}", "gemma3")
        assert chosen.source == "gguf"

    @pytest.mark.parametrize("arch", ["gemma", "gemma2", "gemma3", "Gemma3"])
    def test_gemma_family(self, arch: str) -> None:
        assert choose_template(None, arch).source == "fallback:gemma"

    def test_blank_template_counts_as_missing(self) -> None:
        assert choose_template("  \n", "gemma3").source == "fallback:gemma"

    def test_llama_3_told_apart_by_pre_tokenizer(self) -> None:
        assert choose_template(None, "llama", tokenizer_pre="llama-bpe").source == (
            "fallback:llama3"
        )
        assert choose_template(None, "llama", tokenizer_pre="default").source == ("fallback:llama2")

    def test_anything_else_gets_chatml(self) -> None:
        assert choose_template(None, "qwen2").source == "fallback:chatml"


class TestFallbacks:
    def test_gemma_folds_system_into_first_user_turn(self) -> None:
        text = render(choose_template(None, "gemma3"), CHAT, bos_token="<bos>")
        assert text == (
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
            "<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nBye<end_of_turn>\n"
            "<start_of_turn>model\n"
        )

    def test_gemma_without_system(self) -> None:
        text = render(choose_template(None, "gemma3"), [Message("user", "Hi")], bos_token="<bos>")
        assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"

    def test_chatml(self) -> None:
        text = render(choose_template(None, "qwen2"), CHAT[:2])
        assert text == (
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        )

    def test_llama2(self) -> None:
        text = render(choose_template(None, "llama"), CHAT, bos_token="<s>", eos_token="</s>")
        assert text == (
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"
        )

    def test_llama3(self) -> None:
        chosen = choose_template(None, "llama", tokenizer_pre="llama-bpe")
        text = render(chosen, CHAT[1:2], bos_token="<|begin_of_text|>")
        assert text == (
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )


class TestJinjaLikeTransformers:
    def test_trim_and_lstrip_blocks(self) -> None:
        text = (
            "{% for m in messages %}\n"
            "    {% if m.role == 'user' %}\n"
            "[{{ m.content }}]\n"
            "    {% endif %}\n"
            "{% endfor %}"
        )
        assert render(tpl(text), CHAT) == "[Hi]\n[Bye]\n"

    def test_helpers_and_tokens_are_provided(self) -> None:
        text = (
            "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ strftime_now('%Y') }}"
        )
        year = str(datetime.datetime.now().year)
        assert render(tpl(text), CHAT, bos_token="<s>", eos_token="</s>") == f"<s>|</s>|True|{year}"

    def test_extra_kwargs_reach_the_template(self) -> None:
        text = "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}"
        assert render(tpl(text), CHAT, extra={"enable_thinking": False}) == "/no_think"
        assert render(tpl(text), CHAT) == ""

    def test_extra_kwargs_cannot_replace_the_conversation(self) -> None:
        text = "{{ messages | length }}"
        assert render(tpl(text), CHAT, extra={"messages": []}) == "4"

    def test_tojson_does_not_html_escape(self) -> None:
        assert render(tpl("{{ {'a': '<b>&'} | tojson }}"), CHAT) == '{"a": "<b>&"}'

    def test_loop_controls_extension(self) -> None:
        text = (
            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
            "{{ m.role }}{% endfor %}"
        )
        assert render(tpl(text), CHAT) == "system"

    def test_render_conversation_reports_source(self) -> None:
        rendered = render_conversation(CHAT[1:2], gguf_template=None, architecture="gemma3")
        assert rendered.source == "fallback:gemma"
        assert rendered.text.endswith("<start_of_turn>model\n")


class TestErrors:
    def test_raise_exception_becomes_a_sentence(self) -> None:
        text = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
        with pytest.raises(GenerationError) as info:
            render(tpl(text), CHAT)
        assert "rejected this conversation: Conversation roles must alternate" in str(info.value)

    def test_syntax_error(self) -> None:
        with pytest.raises(GenerationError, match="chat template is broken") as info:
            render(tpl("{% for m in messages %}"), CHAT)
        assert "line" in info.value.detail

    def test_template_bug_is_caught(self) -> None:
        with pytest.raises(GenerationError, match="chat template failed"):
            render(tpl("{{ messages[0].content + 1 }}"), CHAT)

    @pytest.mark.parametrize(
        "text",
        [
            "{{ ''.__class__.__mro__ }}",
            "{% set x = [] %}{{ x.append(1) }}",
            "{{ messages.clear() }}",
        ],
    )
    def test_sandbox_blocks_escapes_and_mutation(self, text: str) -> None:
        with pytest.raises(GenerationError) as info:
            render(tpl(text), CHAT)
        assert "SecurityError" in info.value.detail


@pytest.mark.model
class TestRealTemplates:
    def test_smollm2_template_from_the_gguf(self, starter_model_path: Path) -> None:
        chosen = choose_template(gguf_template(starter_model_path), "llama")
        assert chosen.source == "gguf"
        text = render(chosen, [Message("user", "Hi")])
        assert text == (
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
            "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        )

    def test_session_renders_with_the_gguf_template(
        self, smol_session: ChatSession, starter_model_path: Path
    ) -> None:
        assert smol_session.info.template_source == "gguf"
        expected = render(choose_template(gguf_template(starter_model_path), "llama"), CHAT)
        assert smol_session.render_prompt(CHAT) == expected

    def test_gemma_base_model_gets_the_gemma_fallback(self, gemma_session: ChatSession) -> None:
        assert gemma_session.info.template_source == "fallback:gemma"
        prompt = gemma_session.render_prompt([Message("user", "Hi")])
        assert prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        tokens = gemma_session.tokenize(prompt)
        # <bos> is written by the template, so tokenize must not add a second one;
        # the turn markers are single special tokens, not text.
        assert tokens[0] == 2 and tokens.count(2) == 1
        assert 105 in tokens and 106 in tokens  # <start_of_turn>, <end_of_turn>


class TestThinkingInTemplates:
    SHOW = (
        "{% for m in messages %}[{{ m.role }}:{{ m.content }}"
        "{% if m.reasoning_content is defined %}|r={{ m.reasoning_content }}{% endif %}]"
        "{% endfor %}"
    )

    def test_assistant_thinking_reaches_the_template_as_reasoning_content(self) -> None:
        chat = [
            Message("user", "Q", thinking="not for users"),
            Message("assistant", "A", thinking="T"),
            Message("assistant", "B"),
        ]
        assert render(tpl(self.SHOW), chat) == "[user:Q][assistant:A|r=T][assistant:B]"

    def test_the_real_qwen35_template_from_the_fixture(self) -> None:
        from tests.fixtures.qwen35 import TEMPLATE_PATH

        template = tpl(TEMPLATE_PATH.read_text(encoding="utf-8"))
        chat = [Message("user", "Hi"), Message("assistant", "Hello", thinking="greet")]
        # The reply after the last question keeps its thinking; with a new
        # question after it, the template drops it.
        assert "<think>\ngreet\n</think>\n\nHello" in render(template, chat)
        later = render(template, [*chat, Message("user", "Bye")], extra={"enable_thinking": False})
        assert "greet" not in later
        assert later.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def builder(template: ChatTemplate, **kwargs: str) -> PromptBuilder:
    """A PromptBuilder without a model: rendering needs no tokenizer."""
    return PromptBuilder(
        template,
        bos_token=kwargs.get("bos", ""),
        eos_token=kwargs.get("eos", ""),
        add_bos=False,
        tokenize=lambda _text, _bos: [],
    )


class TestContinuation:
    """The prompt for Continue: the cut-off reply stays open, no end of turn after it."""

    QUESTION = (Message("system", "Be brief."), Message("user", "Why is the sky blue?"))

    def qwen35(self) -> PromptBuilder:
        from tests.fixtures.qwen35 import TEMPLATE_PATH

        return builder(tpl(TEMPLATE_PATH.read_text(encoding="utf-8")))

    def test_qwen35_answer_cut_off_after_thinking(self) -> None:
        b = self.qwen35()
        partial = Message("assistant", "Because of Rayleigh ", thinking="\nLight scatters.\n")
        text, thinking = b.render_continuation(
            [*self.QUESTION, partial], b.variables(thinking=True)
        )
        start = b.render(self.QUESTION, b.variables(thinking=False))
        # The same prefix as a reply with its thinking closed, then the partial answer
        # with its trailing space, and nothing after it.
        assert text == (
            start.removesuffix("<think>\n\n</think>\n\n")
            + "<think>\nLight scatters.\n</think>\n\nBecause of Rayleigh "
        )
        assert not thinking

    def test_qwen35_cut_inside_the_thinking(self) -> None:
        b = self.qwen35()
        partial = Message("assistant", "", thinking="Light scatters off")
        text, thinking = b.render_continuation(
            [*self.QUESTION, partial], b.variables(thinking=True)
        )
        # Exactly the prompt the reply started from, then the thinking so far.
        assert text == b.render(self.QUESTION, b.variables(thinking=True)) + "Light scatters off"
        assert thinking

    def test_qwen35_answer_without_thinking(self) -> None:
        b = self.qwen35()
        text, thinking = b.render_continuation(
            [*self.QUESTION, Message("assistant", "Because")], b.variables(thinking=False)
        )
        assert text == b.render(self.QUESTION, b.variables(thinking=False)) + "Because"
        assert not thinking

    def test_gemma_fallback(self) -> None:
        b = builder(choose_template(None, "gemma3"), bos="<bos>")
        partial = Message("assistant", "The sky is")
        text, thinking = b.render_continuation([*self.QUESTION, partial], b.variables(None))
        assert text == (
            "<bos><start_of_turn>user\nBe brief.\n\nWhy is the sky blue?<end_of_turn>\n"
            "<start_of_turn>model\nThe sky is"
        )
        assert not thinking

    def test_chatml_fallback_with_thinking_the_template_does_not_show(self) -> None:
        b = builder(choose_template(None, "qwen2"))
        partial = Message("assistant", "", thinking="Let me see")
        text, thinking = b.render_continuation([*self.QUESTION, partial], b.variables(None))
        assert text.endswith("<|im_start|>assistant\n<think>\nLet me see") and thinking
        answered = Message("assistant", "It is", thinking="Let me see")
        text, thinking = b.render_continuation([*self.QUESTION, answered], b.variables(None))
        assert text.endswith(
            "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\nIt is"
        )
        assert not thinking

    def test_llama2_fallback_keeps_the_space_before_the_reply(self) -> None:
        b = builder(choose_template(None, "llama"), bos="<s>", eos="</s>")
        partial = Message("assistant", "Blue light")
        text, _ = b.render_continuation([*self.QUESTION, partial], b.variables(None))
        assert text.endswith("Why is the sky blue? [/INST] Blue light")

    def test_nothing_written_yet_is_an_ordinary_prompt(self) -> None:
        b = self.qwen35()
        variables = b.variables(thinking=True)
        empty = Message("assistant", "")
        text, thinking = b.render_continuation([*self.QUESTION, empty], variables)
        assert text == b.render(self.QUESTION, variables) and not thinking
