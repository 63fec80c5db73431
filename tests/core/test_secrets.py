"""Secrets masked wherever fipo records an environment."""

from __future__ import annotations

import json

from fipo_cli.core.secrets import mask_secrets


def test_mask_secrets():
    env = {
        "WANDB_API_KEY": "wandb-secret",
        "HF_TOKEN": "hf_secret",
        "HUGGING_FACE_HUB_TOKEN": "hf_secret",
        "MY_SECRET_VALUE": "s3cr3t",
        "db_password": "hunter2",
        "AWS_CREDENTIALS_FILE": "/home/me/.aws",
        "PATH": "/usr/bin:/bin",
        "WANDB_PROJECT": "fipo",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    masked = mask_secrets(env)
    assert masked == {
        "WANDB_API_KEY": "***",
        "HF_TOKEN": "***",
        "HUGGING_FACE_HUB_TOKEN": "***",
        "MY_SECRET_VALUE": "***",
        "db_password": "***",
        "AWS_CREDENTIALS_FILE": "***",
        "PATH": "/usr/bin:/bin",
        "WANDB_PROJECT": "fipo",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    assert not {"wandb-secret", "hf_secret", "s3cr3t", "hunter2"} & set(json.dumps(masked).split('"'))
    assert env["WANDB_API_KEY"] == "wandb-secret"
