"""adapterkit bench-data: it reads the config's train pipeline and counts what it times."""
import os.path as osp

import pytest

from adapterkit.datasets import synthesize
from adapterkit.datasets.bench import bench_data, format_data_report

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs/quickstart/mtlora_swin-mini_nyud-128.py')


@pytest.mark.parametrize('workers', [0, 1])
def test_bench_data_times_the_train_pipeline_of_a_config(tmp_path, workers):
    root = synthesize(str(tmp_path / 'rooms'), num_train=5, num_val=1, size=(32, 40),
                      layout='nyud')
    result = bench_data(CONFIG, workers=workers, images=4, repeats=2, batch=3,
                        cfg_options={'train_dataloader.dataset.data_root': root})
    assert result['dataset'] == 'NYUDMTDataset' and result['images'] == 4
    assert result['transforms'] == ['MultiTaskRandomAffine', 'PackMultiTaskInputs']
    assert [p['images'] for p in [result['first_pass'], *result['passes']]] == [4, 4, 4]
    assert result['img_s'] > 0 and result['img_s_per_cpu'] > 0
    report = format_data_report(result)
    assert f"median: {result['img_s']} img/s" in report


def test_bench_data_refuses_nonsense_counts():
    with pytest.raises(ValueError, match='bench-data: need workers >= 0, images >= 1'):
        bench_data(CONFIG, workers=-1)
