"""Training the Vokenizer matcher (Tan & Bansal, EMNLP 2020) with Trainer on captioned images, shared by
`hf-mmdl train vokenizer`, `hf-mmdl quickstart` and `examples/run_vokenization.py`.

Every (image, caption) pair of the training split is one row; the matcher learns with the hinge ranking loss
(`config.loss_type`, the released code's paired negatives by default). With no pretrained weights offline, the
BERT and the CNN start from random weights and are trained (not frozen), and a WordPiece vocabulary is trained on
the training captions unless a tokenizer is given.

Proof of learning, measured in the same run on held-out images and captions: token→image recall. For every
*visually grounded* token of a held-out caption (a word piece of a word naming what the image shows: the scenes'
colours, shapes and sizes, which their generator draws; for other data sets the content words, see
[`grounded_words`]), the held-out images are ranked by relevance r(w_i, x; s) = ⟨f(w_i; s), g(x)⟩ and recall@k is
the share of tokens whose own image is among the k best; chance is k / N for N images. On the scenes also
concept@1: the share of grounded tokens whose best image shows what their word names (an object of that colour,
shape or size), against the share of images that do. The **non-contextual
baseline** is the same trained matcher with each token embedded alone (`[CLS] token [SEP]`): what a matcher
without the sentence around the token retrieves. The run saves a [`Vokenizer`] folder (model, processor, the
image keys of a held-out key set and their faiss index) that `Vokenizer.from_pretrained` loads, and `vokens.png`:
a held-out sentence with each token's retrieved image.
"""

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import datasets
import torch
from transformers import AutoTokenizer, BertConfig, ResNetConfig
from transformers.trainer_utils import SchedulerType

from ..architectures.vokenizer import vokenizer_results_table
from ..data.captioning import load_caption_dataset_with_origins
from ..data.scenes import COLOURS, SHAPES, SIZES, _plural
from ..modeling import VokenizerConfig, VokenizerModel
from ..processing import VokenizerImageProcessor, VokenizerProcessor, train_bert_wordpiece
from ..visualization import captioned_image_grid
from ..vokenization import Vokenizer
from .common import resolve_checkpoint
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)

# Fresh matcher sizes for CPU runs: BERT layers / width / heads / FFN, ResNet stage widths, MLP width, joint size.
MODEL_SIZES = {
    "tiny": dict(text=dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64),
                 vision=dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]), mlp_hidden_size=32, joint_dim=16),
    "small": dict(text=dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512),
                  vision=dict(embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1]), mlp_hidden_size=256,
                  joint_dim=64),
}
# The scenes' generator draws exactly these attributes: the words that name what an image shows.
SCENE_GROUNDED_WORDS = frozenset(COLOURS) | frozenset(SHAPES) | {_plural(s) for s in SHAPES} | frozenset(SIZES)
RECALL_KS = (1, 5)
WORD = re.compile(r"[a-z]+")


@dataclass
class VokenizerModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A saved VokenizerModel (or Vokenizer) folder to continue training; default: a fresh matcher."})
    model_size: str = field(default="small", metadata={"help": f"Fresh matcher size: one of {tuple(MODEL_SIZES)}."})
    tokenizer_name: str | None = field(default=None, metadata={
        "help": "A fast BERT tokenizer (folder or Hub id) for a fresh matcher; default: a WordPiece vocabulary of "
                "--vocab_size trained on the training captions."})
    vocab_size: int = field(default=2000, metadata={
        "help": "Size of the WordPiece trained when no tokenizer is given."})
    margin: float = field(default=0.5, metadata={"help": "M of the hinge loss (the released matcher: 0.5)."})
    loss_type: str = field(default="paired", metadata={
        "help": "'paired' (the released code's negatives: the other half of the batch) or 'batchwise'."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout of both MLP heads (the released matcher: 0.3)."})


@dataclass
class VokenizerDataArguments:
    dataset_name: str = field(default="scenes", metadata={
        "help": "'scenes' (built-in captioned shapes), 'twemoji' (Twemoji images and names), or a datasets name / "
                "folder with an image column and a captions column (a list of captions or one string per row)."})
    image_column: str = field(default="image", metadata={"help": "The image column of a datasets dataset."})
    captions_column: str = field(default="captions", metadata={"help": "The captions column of a datasets dataset."})
    num_train_images: int = field(default=2000, metadata={
        "help": "Training images (every caption of each is a row); a datasets dataset is cut to its first N."})
    num_key_images: int = field(default=500, metadata={
        "help": "Held-out images (the validation split) whose keys the saved Vokenizer retrieves from: the vokens."})
    num_eval_images: int = field(default=250, metadata={
        "help": "Held-out images (the test split) and one caption each on which recall is measured (chance k/N)."})
    image_size: int = field(default=64, metadata={
        "help": "Side of the square images the CNN reads (the scenes are drawn at this size; at 32 px the small "
                "shapes shrink to about a pixel after the ResNet's stem and the matcher barely learns them)."})
    max_objects: int = field(default=3, metadata={"help": "Most shapes per built-in scene (1-4)."})
    max_caption_length: int = field(default=20, metadata={
        "help": "Longest caption in word pieces, [CLS]/[SEP] included (the released matcher: 20)."})
    grounded_max_share: float = field(default=0.1, metadata={
        "help": "For data other than the scenes, a word counts as grounded when it occurs in at least 2 and at most "
                "this share of the training captions (names of things; template and function words are frequent)."})


@dataclass
class VokenizerTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/vokenizer")
    per_device_train_batch_size: int = 64  # even: the paired loss splits each batch in halves
    dataloader_drop_last: bool = True  # no odd last batch for the paired loss
    # The released matcher: Adam 1e-3 on MLP heads over frozen encoders; training the random-init BERT and CNN too,
    # a lower rate learned faster here (grounded R@5 after 300 steps at 32 px: 9.4% at 2e-4, 6.0% at 1e-3).
    learning_rate: float = 3e-4
    lr_scheduler_type: SchedulerType | str = "constant_with_warmup"
    warmup_steps: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 5.0
    max_steps: int = 400
    seed: int = 0


def grounded_words(dataset_name: str, captions: list[str], max_share: float = 0.1) -> set[str]:
    """The words that name what an image shows. For the built-in scenes, exactly the attributes their generator
    draws (colours, shapes and their plurals, sizes). Otherwise content words by frequency: words of at least two
    characters occurring in at least 2 and at most `max_share` of `captions` (template and function words such as
    "a", "the", "emoji", "picture" occur in far more)."""
    if dataset_name == "scenes":
        return set(SCENE_GROUNDED_WORDS)
    counts = Counter(word for caption in captions for word in set(WORD.findall(caption.lower())))
    return {word for word, n in counts.items() if len(word) > 1 and 2 <= n <= max_share * len(captions)}


def pair_rows(split: datasets.Dataset, one_caption: bool = False) -> datasets.Dataset:
    """(image, text) rows: every caption of every image, or with `one_caption` one caption per image (caption
    i mod references of image i, so that every template is scored)."""
    images, texts = [], []
    for index, (image, captions) in enumerate(zip(split["image"], split["captions"])):
        chosen = [captions[index % len(captions)]] if one_caption else captions
        images += [image] * len(chosen)
        texts += chosen
    return datasets.Dataset.from_dict({"image": images, "text": texts},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "text": datasets.Value("string")}))


class CaptionImageCollator:
    """Dataset rows → paired matcher inputs (captions cut to `max_length` word pieces)."""

    def __init__(self, processor: VokenizerProcessor, max_length: int):
        self.processor, self.max_length = processor, max_length

    def __call__(self, rows: list[dict]) -> dict:
        return dict(self.processor(text=[row["text"] for row in rows], images=[row["image"] for row in rows],
                                   max_length=self.max_length))


def grounded_positions(tokenizer, texts: list[str], words: set[str], max_length: int) -> tuple[dict, list[dict]]:
    """The processor's encoding of `texts` and, per text, {position: word} for its word pieces (specials excluded)
    that belong to a word of `words`."""
    encoding = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_offsets_mapping=True,
                         return_token_type_ids=True, return_tensors="pt")
    positions = []
    for row, text in enumerate(texts):
        kept = {}
        for position, word_id in enumerate(encoding.word_ids(row)):
            if word_id is None:
                continue
            start, end = encoding.word_to_chars(row, word_id)
            if text[start:end].lower() in words:
                kept[position] = text[start:end].lower()
        positions.append(kept)
    return encoding, positions


@torch.no_grad()
def token_image_recall(model: VokenizerModel, processor: VokenizerProcessor, images: list, texts: list[str],
                       words: set[str], max_length: int = 20, batch_size: int = 64,
                       image_words: list[set[str]] | None = None) -> dict:
    """Token→image recall on paired held-out (image, caption) rows, in context and without it.

    For every word piece of every caption (specials excluded), the N images are ranked by relevance with its token
    key; a token is a hit at k when its own caption's image is among the k best. Returns, for "grounded" tokens
    (word pieces of a word in `words`) and "all" tokens: recall@k of the keys in context ("contextual"), of the
    keys of each word piece embedded alone as `[CLS] piece [SEP]` ("non_contextual"), and "chance" k / N, plus the
    token counts. With `image_words` (per image, the grounded words true of it: the scenes' colours, shapes, sizes),
    also "concept@1" for grounded tokens: the share whose best image shows what their word names, whichever image
    that is; its chance is the mean share of images that show it. Raises ValueError when no caption holds a
    grounded token."""
    model.eval()
    tokenizer = processor.tokenizer
    image_keys = torch.cat([model.get_image_keys(processor(images=images[s:s + batch_size])["pixel_values"]
                                                 .to(model.device)).float().cpu()
                            for s in range(0, len(images), batch_size)])
    queries = {"contextual": [], "non_contextual": []}
    owners, grounded = [], []  # per token: its caption's row; its grounded word or None
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        encoding, positions = grounded_positions(tokenizer, chunk, words, max_length)
        keys = model.get_text_keys(encoding["input_ids"].to(model.device), encoding["attention_mask"].to(model.device),
                                   encoding["token_type_ids"].to(model.device)).float().cpu()
        special = set(tokenizer.all_special_ids)
        pieces = []
        for row in range(len(chunk)):
            for position, token in enumerate(encoding["input_ids"][row].tolist()):
                if encoding["attention_mask"][row, position] and token not in special:
                    queries["contextual"].append(keys[row, position])
                    pieces.append(token)
                    owners.append(start + row)
                    grounded.append(positions[row].get(position))
        alone = torch.tensor([[tokenizer.cls_token_id, piece, tokenizer.sep_token_id] for piece in pieces])
        queries["non_contextual"].append(model.get_text_keys(alone.to(model.device)).float().cpu()[:, 1])
    if all(word is None for word in grounded):
        raise ValueError("No held-out caption holds a visually grounded word, so grounded recall is undefined: check "
                         "the captions column (or, for other data, --grounded_max_share).")
    keys = {"contextual": torch.stack(queries["contextual"]), "non_contextual": torch.cat(queries["non_contextual"])}
    token_words = grounded
    owners, grounded = torch.tensor(owners), torch.tensor([word is not None for word in token_words])
    result = {}
    for subset, chosen in (("grounded", grounded), ("all", torch.ones_like(grounded))):
        result[subset] = {"tokens": int(chosen.sum()),
                          "chance": {f"R@{k}": min(1.0, k / len(images)) for k in RECALL_KS}}
        for name, query in keys.items():
            ranking = (query[chosen] @ image_keys.T).argsort(1, descending=True)
            own = owners[chosen].unsqueeze(1)
            result[subset][name] = {f"R@{k}": float((ranking[:, :k] == own).any(1).float().mean()) for k in RECALL_KS}
            if subset == "grounded" and image_words is not None:
                named = [word for word in token_words if word is not None]
                result[subset][name]["concept@1"] = sum(word in image_words[best] for word, best in
                                                        zip(named, ranking[:, 0].tolist())) / len(named)
                result[subset]["chance"]["concept@1"] = sum(sum(word in shown for shown in image_words) / len(images)
                                                            for word in named) / len(named)
    result["images"] = len(images)
    return result


def fresh_config(size: str, tokenizer, args) -> VokenizerConfig:
    preset = MODEL_SIZES[size]
    text = BertConfig(**preset["text"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      max_position_embeddings=max(64, args.data.max_caption_length))
    vision = ResNetConfig(**preset["vision"], layer_type="basic")
    return VokenizerConfig(text_config=text, vision_config=vision, lang_layers=[-2, -1],
                           mlp_hidden_size=preset["mlp_hidden_size"], joint_dim=preset["joint_dim"],
                           dropout=args.model.dropout, margin=args.model.margin, loss_type=args.model.loss_type,
                           freeze_text_backbone=False, freeze_vision_backbone=False)


class VokenizerRecipe(Recipe):
    name = "vokenizer"
    description = ("Train the Vokenizer's contextual token-image matcher on captioned images (hinge ranking loss) and "
                   "score token→image recall of visually grounded held-out tokens against chance and the same "
                   "matcher embedding each token alone; save a Vokenizer (matcher + image keys + faiss index).")
    argument_classes = {"model": VokenizerModelArguments, "data": VokenizerDataArguments,
                        "training": VokenizerTrainingArguments}
    help_notes = ("Data: every caption of each training image is a row. The saved Vokenizer's key set is the first "
                  "--num_key_images validation images; recall is measured on the first --num_eval_images test "
                  "images with one caption each. Vokenize text with "
                  "hf_mmdl.vokenization.Vokenizer.from_pretrained(output_dir).vokenize([...]).")

    def load_data(self, args):
        d = args.data
        for name in ("num_train_images", "num_key_images", "num_eval_images"):
            if getattr(d, name) < 2:
                raise ValueError(f"--{name} must be at least 2, got {getattr(d, name)}.")
        if d.dataset_name == "scenes":
            kwargs = dict(num_train=d.num_train_images, num_validation=d.num_key_images, num_test=d.num_eval_images,
                          image_size=max(24, d.image_size), max_objects=d.max_objects)
        elif d.dataset_name == "twemoji":
            kwargs = dict(image_size=d.image_size)
        else:
            kwargs = dict(image_column=d.image_column, captions_column=d.captions_column)
        user = load_caption_dataset_with_origins(d.dataset_name, **kwargs)
        data, args.origins = user.data, user.origins
        held_out = [split for split in ("validation", "test") if split in data]
        if len(held_out) < 2:
            raise ValueError(f"{d.dataset_name} needs validation and test splits (key images and scored captions); "
                             f"it has {sorted(data)}.")
        sizes = {"train": d.num_train_images, "validation": d.num_key_images, "test": d.num_eval_images}
        # Kept for `save`, which builds the key store of the validation images after training.
        args.splits = datasets.DatasetDict({split: rows.select(range(min(sizes[split], len(rows))))
                                            for split, rows in data.items() if split in sizes})
        return args.splits

    def build(self, args, data):
        m, d = args.model, args.data
        if m.model_name_or_path:
            model = VokenizerModel.from_pretrained(m.model_name_or_path)
            processor = VokenizerProcessor.from_pretrained(m.model_name_or_path)
        else:
            if m.model_size not in MODEL_SIZES:
                raise ValueError(f"--model_size must be one of {tuple(MODEL_SIZES)}, got {m.model_size!r}.")
            # A resumed run continues with the vocabulary its checkpoint was trained on: `tokenizers`' WordPiece
            # trainer breaks ties between equally frequent merges differently in each process, so retraining it
            # could renumber the tokens under the restored embeddings.
            checkpoint = resolve_checkpoint(args.training) if args.training.resume_from_checkpoint else None
            if m.tokenizer_name or checkpoint:
                tokenizer = AutoTokenizer.from_pretrained(m.tokenizer_name or checkpoint)
            else:
                captions = [c for captions in data["train"]["captions"] for c in captions]
                tokenizer = train_bert_wordpiece(captions, vocab_size=m.vocab_size,
                                                 model_max_length=d.max_caption_length)
            processor = VokenizerProcessor(VokenizerImageProcessor.for_size(d.image_size), tokenizer)
            model = VokenizerModel(fresh_config(m.model_size, tokenizer, args))
        if args.training.per_device_train_batch_size % 2 and model.config.loss_type == "paired":
            raise ValueError(f"--per_device_train_batch_size {args.training.per_device_train_batch_size} is odd; the "
                             "paired hinge loss splits each batch in halves: pass an even batch size.")
        train_captions = [c for captions in data["train"]["captions"] for c in captions]
        args.grounded = grounded_words(args.data.dataset_name, train_captions, args.data.grounded_max_share)
        return model, processor

    def train_dataset(self, args, processor, data):
        return pair_rows(data["train"])

    def collator(self, args, processor, data):
        return CaptionImageCollator(processor, args.data.max_caption_length)

    def trainer(self, args, model, processor, data, checkpoint):
        trainer = super().trainer(args, model, processor, data, checkpoint)
        trainer.processing_class = processor  # every checkpoint keeps the run's tokenizer for resuming
        return trainer

    def evaluate(self, args, trainer, model, processor, data):
        test = pair_rows(data["test"], one_caption=True)
        image_words = None
        if args.data.dataset_name == "scenes":  # what each held-out scene shows, from its generator's objects
            image_words = [{word for o in objects for word in (o["colour"], o["shape"], _plural(o["shape"]), o["size"])}
                           for objects in data["test"]["objects"]]
        recall = token_image_recall(model, processor, list(test["image"]), list(test["text"]), args.grounded,
                                    args.data.max_caption_length, image_words=image_words)
        return {"model_type": model.config.model_type, "dataset": args.data.dataset_name, "splits": args.origins,
                "image_size": args.data.image_size, "train_images": len(data["train"]),
                "train_rows": sum(len(c) for c in data["train"]["captions"]),
                "key_images": len(data["validation"]), "vocab_size": len(processor.tokenizer),
                "grounded_words": sorted(args.grounded)[:50], "recall": recall}

    def save(self, args, trainer, model, processor, out):
        """The Vokenizer folder: the matcher, its processor and the key store of the validation images, with 32-pixel
        thumbnails so the demo can show each token's voken."""
        data = args.splits
        keys = data["validation"]
        vokenizer = Vokenizer.build(model, processor, keys, show_progress=False, thumbnail_size=32,
                                    id_column="image_id" if "image_id" in keys.column_names else None)
        vokenizer.save_pretrained(out)
        args.vokenizer = vokenizer

    def figures(self, args, model, processor, data, results, out):
        """`vokens.png`: a held-out caption's image, then each of its tokens above the key-set image it retrieved."""
        test = data["test"]
        row = max(range(min(20, len(test))), key=lambda i: len(test[i]["captions"][0]))
        sentence = test[row]["captions"][0]
        vokenized = args.vokenizer.vokenize([sentence])[0]
        key_images = data["validation"]
        images, labels = [test[row]["image"]], [[("scene", sentence)]]
        for token, voken, score in zip(vokenized.tokens, vokenized.vokens, vokenized.scores):
            if voken >= 0:
                images.append(key_images[int(voken)]["image"])
                labels.append([(token, f"r = {score:.2f}")])
        return [captioned_image_grid(images, labels, out / "vokens.png", columns=min(8, len(images)), tile=128,
                                     title=f"Vokenizer: each token's retrieved image (voken) among {len(key_images)} "
                                           "held-out scenes, in context")]

    results_table = staticmethod(vokenizer_results_table)


VOKENIZER_RECIPE = VokenizerRecipe()
main = VOKENIZER_RECIPE.main

__all__ = ["CaptionImageCollator", "MODEL_SIZES", "SCENE_GROUNDED_WORDS", "VOKENIZER_RECIPE", "VokenizerDataArguments",
           "VokenizerModelArguments", "VokenizerRecipe", "VokenizerTrainingArguments", "grounded_words", "main",
           "pair_rows", "token_image_recall"]
