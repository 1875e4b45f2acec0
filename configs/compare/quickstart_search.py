# The quickstart comparison with a learning-rate search per member: each of full
# fine-tuning, LoRA and MTLoRA tries three learning rates on a held-out fifth of the train
# list (never on val), keeps the best by held-out Δm (against single-task references
# trained and scored on the same split), and is then trained again on the whole train list
# with it and reported on val. Everything else is the quickstart suite (quickstart.py):
# same data, pretraining, schedule and references.
#
#   adapterkit compare configs/compare/quickstart_search.py [--executor local --max-parallel 2]
#
# 21 runs of 120 iterations after the pretraining (4 held-out references, 9 search points,
# 4 references, 3 final runs): about three times the demo's time.
_base_ = ['./quickstart.py']

members = dict(
    _delete_=True,
    full='../quickstart/full_swin-mini_synthetic-128.py',
    lora='../quickstart/lora_swin-mini_synthetic-128.py',
    mtlora='../quickstart/mtlora_swin-mini_synthetic-128.py',
)

# lr 1e-3 is the quickstart's shared rate; the search also tries a third and three times it
search = dict(lr=[3e-4, 1e-3, 3e-3], holdout=0.2, seed=0, score='delta_m', final='retrain')
