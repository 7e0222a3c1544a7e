"""Instruction paraphrases, written for this project (the paper used three to ten per task).

NER templates take `{entity}` (singular) and `{entities}` (plural); typed templates also take `{types}`.
"""

from __future__ import annotations

NER_LINES = (
    "Tag every token of the sentence for {entity} mentions. Write one line per token as `token : TAG`, where TAG "
    "is B for the first token of a {entity} mention, I for a later token of the same mention, and O for any "
    "other token.",
    "Read the biomedical sentence below and label each of its tokens with the BIO scheme for {entities}: B opens "
    "a mention, I continues it, O marks a token outside every mention. Answer with one `token : TAG` line per "
    "token, keeping the original order.",
    "You are annotating {entity} mentions in scientific text. For each input token, in order, output a line of "
    "the form `token : TAG` with TAG set to B (beginning of a {entity}), I (inside a {entity}) or O (not part of "
    "one).",
    "Find the {entities} named in this sentence by giving each token a BIO tag. Produce exactly one line per "
    "input token, formatted `token : TAG`; use B for the first word of a mention, I for the words that follow "
    "inside it, and O everywhere else.",
    "Perform named entity recognition for {entities}. Walk through the tokens one at a time and write "
    "`token : B`, `token : I` or `token : O` on separate lines: B starts a mention, I extends the current one, "
    "O means the token belongs to no mention.",
    "Mark up the sentence for {entities} using BIO tags. List the tokens exactly as given, one per line, each "
    "followed by ` : ` and its tag (B = first token of a {entity}, I = continuation, O = outside).",
)

NER_LINES_TYPED = (
    "Tag every token of the clinical sentence with a BIO label. Mentions have one of these types: {types}. "
    "Write one line per token as `token : TAG`, where TAG is B-TYPE for the first token of a mention, I-TYPE for "
    "a later token of the same mention, and O for any other token.",
    "Read the clinical note excerpt and label each token for {entities}. The entity types are {types}. Answer "
    "with one `token : TAG` line per token in the original order, using B-TYPE to open a mention, I-TYPE to "
    "continue it and O outside mentions.",
    "You are annotating {entities} in a discharge summary. For each input token, in order, output "
    "`token : TAG`, with TAG one of O, B-TYPE or I-TYPE, where TYPE is one of {types}.",
    "Find the {entities} in this sentence and give each token a typed BIO tag (types: {types}). Produce exactly "
    "one line per input token, formatted `token : TAG`.",
    "Perform clinical named entity recognition with the types {types}. Go through the tokens one at a time and "
    "write `token : TAG` on separate lines: B-TYPE starts a mention of that type, I-TYPE extends it, O means the "
    "token belongs to no mention.",
)

NER_ENTITIES = (
    "List the {entity} mentions in the sentence, one per line, in the order they appear, copying each exactly "
    "as written. If the same words also occur earlier without being a mention, add ` [occurrence N]` to say "
    "which occurrence you mean. Answer None if there is no {entity}.",
    "Extract every {entity} named in this biomedical sentence. Write each mention on its own line, in sentence "
    "order and with its original wording; append ` [occurrence N]` only when the text appears more than once "
    "and an earlier copy is not the mention. Write None when nothing qualifies.",
    "Which {entities} does the sentence mention? Give one mention per line, verbatim and in order of "
    "appearance (mark a repeated string with ` [occurrence N]` if an earlier copy is not the mention). If there "
    "are none, answer None.",
    "Identify the {entities} in the text below. Output each mention verbatim on a separate line, following the "
    "order of the sentence; when its words also occur earlier outside a mention, add ` [occurrence N]`. Reply "
    "None if the sentence names no {entity}.",
    "Pull out all {entity} mentions from the sentence, one line each, in the order they occur and spelled as "
    "in the input. Use ` [occurrence N]` to disambiguate a string that appears earlier without being a mention. "
    "Say None if there are no mentions.",
)

NER_ENTITIES_TYPED = (
    "List the {entities} in the clinical sentence, one per line in order of appearance, each copied verbatim "
    "and followed by its type in parentheses, one of {types}. Add ` [occurrence N]` when the same words occur "
    "earlier without being that mention. Answer None if there are none.",
    "Extract every mention of type {types} from this clinical text. Write `mention (TYPE)` on its own line for "
    "each, in sentence order; append ` [occurrence N]` to disambiguate repeated wording. Write None when "
    "nothing qualifies.",
    "Which {entities} does the sentence mention? Give one `mention (TYPE)` per line, verbatim and in order, with "
    "TYPE among {types}. If there are none, answer None.",
    "Identify the {entities} below and label each with one of {types}. Output `mention (TYPE)` lines in the "
    "order of the sentence, marking a repeated string with ` [occurrence N]` if needed. Reply None if there are "
    "none.",
    "Pull out all clinical mentions (types: {types}) from the sentence, one `mention (TYPE)` per line in order. "
    "Use ` [occurrence N]` for a string that also appears earlier outside a mention, and say None if there are "
    "no mentions.",
)

GAD = (
    "The sentence mentions a gene, masked as @GENE$, and a disease, masked as @DISEASE$. Does it state that the "
    "two are associated? Answer `Association` or `No association`.",
    "Decide whether the text below reports a relationship between the gene written @GENE$ and the disease "
    "written @DISEASE$. Reply with Association if it does, otherwise No association.",
    "You are curating a gene-disease association database. Read the sentence, where @GENE$ hides the gene and "
    "@DISEASE$ hides the disease, and answer Association or No association.",
    "Classify the gene-disease relation in this sentence. The gene is replaced by @GENE$ and the disease by "
    "@DISEASE$. Output `Association` when the sentence supports a link between them and `No association` when "
    "it does not.",
    "Is there evidence in the sentence that @GENE$ is linked to @DISEASE$ (a masked gene and a masked disease)? "
    "Respond with exactly one of: Association, No association.",
)

I2B2_2010_LEGEND = (
    "TrIP: the treatment improves the problem\n"
    "TrWP: the treatment worsens the problem\n"
    "TrCP: the treatment causes the problem\n"
    "TrAP: the treatment is given for the problem\n"
    "TrNAP: the treatment is withheld because of the problem\n"
    "TeRP: the test reveals the problem\n"
    "TeCP: the test is done to investigate the problem\n"
    "PIP: one problem indicates the other\n"
    "No Relations: none of the above"
)

I2B2_2010 = tuple(
    text + "\n" + I2B2_2010_LEGEND
    for text in (
        "Two concepts in this clinical sentence are masked: problems as @problem$, tests as @test$ and treatments "
        "as @treatment$. Name the relation between them with one code from the list:",
        "Classify how the two masked concepts (@problem$, @test$, @treatment$) in the discharge-summary sentence "
        "relate to each other. Answer with a single code:",
        "You are annotating relations in clinical notes. The sentence contains two masked concepts, marked "
        "@problem$, @test$ or @treatment$. Reply with the code that fits their relation:",
        "Read the clinical text and decide which relation holds between its two masked entities (@problem$ for a "
        "medical problem, @test$ for a test, @treatment$ for a treatment). Choose one:",
        "Determine the relation type linking the masked medical problem, test or treatment mentions in the "
        "sentence. Output only the code:",
    )
)

MEDNLI = (
    "Given a premise taken from a patient's clinical history and a hypothesis, decide whether the premise "
    "entails the hypothesis, contradicts it, or neither. Answer Entailment, Contradiction or Neutral.",
    "Read the clinical premise and the hypothesis. If the hypothesis must be true given the premise, answer "
    "Entailment; if it must be false, answer Contradiction; if the premise does not settle it, answer Neutral.",
    "Classify the inference relation between the two clinical statements below as Entailment, Contradiction or Neutral.",
    "You are checking clinical reasoning. Does the premise support the hypothesis (Entailment), rule it out "
    "(Contradiction), or leave it open (Neutral)? Reply with one word.",
    "Judge whether the hypothesis follows from, conflicts with, or is unrelated to the premise from a medical "
    "record. Output one label: Entailment, Contradiction, Neutral.",
)

HOC_LEGEND = "\n".join(
    (
        "Sustaining proliferative signaling (PS)",
        "Evading growth suppressors (GS)",
        "Resisting cell death (CD)",
        "Enabling replicative immortality (RI)",
        "Inducing angiogenesis (A)",
        "Activating invasion and metastasis (IM)",
        "Genomic instability and mutation (GI)",
        "Tumor-promoting inflammation (TPI)",
        "Deregulating cellular energetics (CE)",
        "Avoiding immune destruction (ID)",
    )
)

HOC = tuple(
    text + "\n" + HOC_LEGEND
    for text in (
        "Which hallmarks of cancer does this sentence from a biomedical abstract describe? Answer with every "
        "hallmark that applies, separated by commas, or None if the sentence describes none. The hallmarks are:",
        "Label the abstract sentence with the cancer hallmarks it provides evidence for. Several may apply; write "
        "them comma-separated, or write None. Choose from:",
        "You are annotating cancer literature. List, comma-separated, each hallmark of cancer the sentence "
        "relates to, or None if it relates to no hallmark. Options:",
        "Classify the sentence into zero or more hallmarks of cancer. Give the applicable ones separated by "
        "commas, or None when no hallmark is discussed:",
        "Read the sentence and decide which of the ten hallmarks of cancer it mentions. Reply with a "
        "comma-separated list of hallmarks, or None. The ten hallmarks:",
    )
)

PUBMEDQA = (
    "Answer the research question using the abstract that follows it. Reply yes, no or maybe.",
    "Based only on the context from a PubMed abstract, does the evidence answer the question with yes, no or "
    "maybe? Give one word.",
    "Read the question and the abstract excerpt, then state the conclusion the study supports: yes, no or maybe.",
    "You are a biomedical researcher. Using the study context given, answer the question with yes, no, or maybe.",
    "Decide what the abstract concludes about the question. Output exactly one of: yes, no, maybe.",
)

CHATDOCTOR = (
    "Act as a doctor and reply to the patient's description of their symptoms with advice.",
    "You are a physician answering an online consultation. Respond helpfully to the patient's message below.",
    "As a medical doctor, read what the patient writes and give your assessment and recommendations.",
    "Reply to this patient as a caring, knowledgeable doctor would, based on the symptoms they describe.",
    "A patient has sent the following question. Answer it in the role of a qualified physician.",
)

PMC_LLAMA = (
    "Answer the following biomedical question.",
    "Respond to the medical query below accurately and concisely.",
    "Use your biomedical knowledge to answer the question.",
    "Provide the correct answer to this medical question.",
    "Give a well-founded answer to the biomedical question that follows.",
)
